"""Tell a payload's format from the keys of its records (see docs/sources.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmledger.sources import (
    anthropic,
    bedrock,
    claude_code,
    claude_transcript,
    codex,
    gemini,
    gemini_cli,
    langchain,
    openai,
    otel,
)
from llmledger.sources._common import Record

_TRANSCRIPT_KEYS = ("sessionId", "parentUuid", "requestId", "isSidechain", "leafUuid")
_TRANSCRIPT_TYPES = frozenset({"summary", "file-history-snapshot", "attachment", "progress"})
_LOOKAHEAD = 200


def detect_records(records: Sequence[Record], kind: str) -> str | None:
    """The format of decoded records; ``kind`` is "object", "array" or "lines"."""
    if kind == "object" and len(records) == 1 and isinstance(records[0].value, dict):
        return _detect_object(records[0].value, single=True)
    for rec in records[:_LOOKAHEAD]:
        if not isinstance(rec.value, dict):
            continue
        fmt = _detect_object(rec.value, single=False)
        if fmt is None:
            continue
        if fmt == claude_code.STREAM and kind == "array" and _has_result(records):
            return claude_code.RESULT  # --verbose json: an array of the session's messages
        if fmt == gemini.FORMAT and len(records) > 1:
            return gemini.STREAM
        return fmt
    return None


def _has_result(records: Sequence[Record]) -> bool:
    return any(isinstance(r.value, dict) and r.value.get("type") == "result" for r in records)


def _detect_object(v: Mapping[str, Any], *, single: bool) -> str | None:
    kind = v.get("type")
    if isinstance(kind, str):
        fmt = _by_type(v, kind, single=single)
        if fmt is not None:
            return fmt
    obj = v.get("object")
    if obj == "chat.completion":
        return openai.CHAT
    if obj == "chat.completion.chunk":
        return openai.CHAT_STREAM
    if obj == "response":
        return openai.RESPONSES
    return _by_keys(v)


def _by_type(v: Mapping[str, Any], kind: str, *, single: bool) -> str | None:
    if kind in codex.ROLLOUT_TYPES and "payload" in v:
        return codex.ROLLOUT
    if kind in codex.EXEC_TYPES:
        return codex.EXEC
    if kind in anthropic.STREAM_EVENTS:
        return anthropic.STREAM
    if kind.startswith("response."):
        return openai.RESPONSES_STREAM
    if kind == "result":
        if "stats" in v:
            return gemini_cli.STREAM
        return claude_code.RESULT if single else claude_code.STREAM
    if kind == "message" and isinstance(v.get("usage"), dict):
        return anthropic.MESSAGES
    if kind in ("assistant", "user"):
        if any(k in v for k in _TRANSCRIPT_KEYS):
            return claude_transcript.FORMAT
        if "session_id" in v or "parent_tool_use_id" in v:
            return claude_code.STREAM
        return None
    if kind in _TRANSCRIPT_TYPES:
        return claude_transcript.FORMAT
    if kind in ("system", "stream_event"):
        return claude_code.STREAM
    if kind in gemini_cli.STREAM_TYPES:
        return gemini_cli.STREAM
    if kind == "gemini" and "tokens" in v:
        return gemini_cli.CHAT
    return None


def _by_keys(v: Mapping[str, Any]) -> str | None:
    if isinstance(v.get("message"), dict) and any(k in v for k in _TRANSCRIPT_KEYS):
        return claude_transcript.FORMAT  # a transcript line without ``type`` (or another one)
    if "usageMetadata" in v or "candidates" in v or "modelVersion" in v:
        return gemini.FORMAT
    if "usage_metadata" in v and ("model_version" in v or "response_id" in v):
        return gemini.FORMAT
    if "resourceSpans" in v or _has_genai_attributes(v.get("attributes")):
        return otel.FORMAT
    stats = v.get("stats")
    if isinstance(stats, dict) and "models" in stats:
        return gemini_cli.JSON
    if "projectHash" in v or "$set" in v or "$rewindTo" in v:
        return gemini_cli.CHAT
    usage = v.get("usage")
    if isinstance(usage, dict) and "inputTokens" in usage:
        return bedrock.FORMAT
    meta = v.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("usage"), dict):
        return bedrock.STREAM
    if any(k in v for k in bedrock.STREAM_EVENTS):
        return bedrock.STREAM
    if "modelUsage" in v:
        return claude_code.RESULT
    if langchain.is_usage_metadata(v) or isinstance(v.get("usage_metadata"), dict):
        return langchain.FORMAT
    if v and all(langchain.is_usage_metadata(u) for u in v.values()):
        return langchain.FORMAT
    return None


def _has_genai_attributes(attrs: object) -> bool:
    if isinstance(attrs, dict):
        return any(isinstance(k, str) and k.startswith("gen_ai.") for k in attrs)
    if isinstance(attrs, list):
        return any(
            isinstance(a, dict) and str(a.get("key", "")).startswith("gen_ai.") for a in attrs
        )
    return False
