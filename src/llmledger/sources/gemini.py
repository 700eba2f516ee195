"""Google Gemini ``generateContent`` responses and their streams (``usageMetadata``).

``promptTokenCount`` includes cached content; ``candidatesTokenCount`` excludes thoughts;
``toolUsePromptTokenCount`` is input that is in neither. Normalized: input = prompt − cached +
tool-use prompt, output = candidates + thoughts, reasoning = thoughts. Stream chunks carry
cumulative usage, so the last chunk of each response counts, never the sum (trap 13).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmledger.call import Call
from llmledger.sources._common import (
    Ctx,
    JsonObj,
    Record,
    Summary,
    as_obj,
    count,
    get_obj,
    get_str,
    make_usage,
    plus,
    sub,
)
from llmledger.usage import Usage

FORMAT = "gemini_generate_content"
STREAM = "gemini_generate_content_stream"
PROVIDER = "google"

# REST uses camelCase; the Python SDK's model_dump uses snake_case.
_KEYS = {
    "prompt": ("promptTokenCount", "prompt_token_count"),
    "cached": ("cachedContentTokenCount", "cached_content_token_count"),
    "candidates": ("candidatesTokenCount", "candidates_token_count"),
    "thoughts": ("thoughtsTokenCount", "thoughts_token_count"),
    "tool": ("toolUsePromptTokenCount", "tool_use_prompt_token_count"),
    "total": ("totalTokenCount", "total_token_count"),
}


def _get(u: Mapping[str, Any], name: str, ctx: Ctx) -> int | None:
    for key in _KEYS[name]:
        if key in u:
            return count(u, key, ctx, f"usageMetadata.{key}")
    return None


def usage_metadata(u: Mapping[str, Any], ctx: Ctx) -> Usage:
    """Normalize a Gemini ``usageMetadata`` object."""
    cached = _get(u, "cached", ctx)
    thoughts = _get(u, "thoughts", ctx)
    uncached = sub(_get(u, "prompt", ctx), cached or 0, ctx, "promptTokenCount", "cached")
    usage = make_usage(
        ctx,
        input_tokens=plus(uncached, _get(u, "tool", ctx)),
        cache_read_tokens=cached,
        output_tokens=plus(_get(u, "candidates", ctx), thoughts),
        reasoning_tokens=thoughts,
    )
    total = _get(u, "total", ctx)
    if total is not None and usage.total_tokens is not None and total != usage.total_tokens:
        ctx.warn(f"totalTokenCount {total} differs from the sum of the parts {usage.total_tokens}")
    return usage


def _metadata(obj: Mapping[str, Any], ctx: Ctx) -> JsonObj | None:
    return get_obj(obj, "usageMetadata", ctx) or get_obj(obj, "usage_metadata", ctx)


def _call(obj: Mapping[str, Any], usage: Usage, ctx: Ctx, source: str) -> Call:
    rid = get_str(obj, "responseId", ctx) or get_str(obj, "response_id", ctx)
    model = get_str(obj, "modelVersion", ctx) or get_str(obj, "model_version", ctx)
    return Call(
        usage=usage,
        source=source,
        model=model,
        provider=PROVIDER,
        dedupe_key=rid,
        message_id=rid,
    )


def parse_response(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``GenerateContentResponse``."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        obj = as_obj(rec.value, ctx, "response")
        u = _metadata(obj, ctx)
        if u is None:
            ctx.warn("response has no usageMetadata")
        calls.append(_call(obj, usage_metadata(u, ctx) if u else Usage(), ctx, FORMAT))
    return calls, None


def parse_stream(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per response id, from the last chunk that carries ``usageMetadata``."""
    last: dict[str | None, tuple[int | None, JsonObj, JsonObj | None]] = {}
    for rec in records:
        ctx.line = rec.line
        chunk = as_obj(rec.value, ctx, "chunk")
        rid = get_str(chunk, "responseId", ctx) or get_str(chunk, "response_id", ctx)
        u = _metadata(chunk, ctx)
        if u is not None or rid not in last:
            last[rid] = (rec.line, chunk, u)
    calls = []
    for line, chunk, u in last.values():
        ctx.line = line
        if u is None:
            ctx.warn("stream has no usageMetadata")
        calls.append(_call(chunk, usage_metadata(u, ctx) if u else Usage(), ctx, STREAM))
    return calls, None
