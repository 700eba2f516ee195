"""Gemini CLI: headless output (``--output-format json`` and ``stream-json``) and the chat
recordings it keeps under ``~/.gemini/tmp/<project>/chats/``.

The json form's ``stats.models[*].tokens`` are sums of Gemini ``usageMetadata``: ``prompt``
includes ``cached``, ``candidates`` excludes ``thoughts``, and ``tool`` is input in neither.
The stream-json ``result.stats`` reports neither thoughts nor tool-prompt tokens, so output is
taken as ``total_tokens − input_tokens`` (exact only without tool-use prompt tokens).
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
    join_key,
    make_usage,
    plus,
    sub,
    timestamp,
)
from llmledger.usage import Usage

JSON = "gemini_cli_json"
STREAM = "gemini_cli_stream_json"
CHAT = "gemini_cli_chat"
PROVIDER = "google"

STREAM_TYPES = frozenset({"init", "message", "tool_use", "tool_result", "error", "result"})


def _json_usage(t: Mapping[str, Any], ctx: Ctx, where: str) -> Usage:
    cached = count(t, "cached", ctx, f"{where}.cached")
    prompt = count(t, "prompt", ctx, f"{where}.prompt")
    if prompt is not None:
        uncached = sub(prompt, cached or 0, ctx, f"{where}.prompt", "cached")
    else:
        uncached = count(t, "input", ctx, f"{where}.input")
    thoughts = count(t, "thoughts", ctx, f"{where}.thoughts")
    usage = make_usage(
        ctx,
        input_tokens=plus(uncached, count(t, "tool", ctx, f"{where}.tool")),
        cache_read_tokens=cached,
        output_tokens=plus(count(t, "candidates", ctx, f"{where}.candidates"), thoughts),
        reasoning_tokens=thoughts,
    )
    total = count(t, "total", ctx, f"{where}.total")
    if total is not None and usage.total_tokens is not None and total != usage.total_tokens:
        ctx.warn(f"{where}.total {total} differs from the sum of the parts {usage.total_tokens}")
    return usage


def parse_json(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per model in ``stats.models``; the summary sums their API latencies."""
    if len(records) != 1:
        raise ctx.error(f"expected one JSON document, got {len(records)} records")
    ctx.line = records[0].line
    doc = as_obj(records[0].value, ctx, "output")
    session_id = get_str(doc, "session_id", ctx)
    stats = get_obj(doc, "stats", ctx) or {}
    calls = []
    latency: int | None = None
    for model, entry in (get_obj(stats, "models", ctx, "stats.models") or {}).items():
        where = f"stats.models.{model}"
        entry = as_obj(entry, ctx, where)
        tokens = get_obj(entry, "tokens", ctx, f"{where}.tokens") or {}
        api = get_obj(entry, "api", ctx, f"{where}.api") or {}
        model_latency = count(api, "totalLatencyMs", ctx, f"{where}.api.totalLatencyMs")
        latency = plus(latency, model_latency)
        meta: dict[str, Any] = {}
        for key in ("totalRequests", "totalErrors", "totalLatencyMs"):
            value = count(api, key, ctx, f"{where}.api.{key}")
            if value is not None:
                meta[key] = value
        calls.append(
            Call(
                usage=_json_usage(tokens, ctx, f"{where}.tokens"),
                source=JSON,
                model=model,
                provider=PROVIDER,
                dedupe_key=join_key(session_id, model),
                session_id=session_id,
                metadata=meta,
            )
        )
    summary = Summary(
        session_id=session_id,
        duration_api_ms=latency,  # a sum of request latencies, not wall time (trap 22)
        is_error=doc.get("error") is not None,
    )
    return calls, summary


def _stream_usage(s: Mapping[str, Any], ctx: Ctx, where: str) -> Usage:
    cached = count(s, "cached", ctx, f"{where}.cached")
    prompt = count(s, "input_tokens", ctx, f"{where}.input_tokens")
    uncached = count(s, "input", ctx, f"{where}.input")
    if uncached is None:
        uncached = sub(prompt, cached or 0, ctx, f"{where}.input_tokens", "cached")
    total = count(s, "total_tokens", ctx, f"{where}.total_tokens")
    if total is not None and prompt is not None:
        output = sub(total, prompt, ctx, f"{where}.total_tokens", "input_tokens")
    else:
        output = count(s, "output_tokens", ctx, f"{where}.output_tokens")
    return make_usage(ctx, input_tokens=uncached, cache_read_tokens=cached, output_tokens=output)


def parse_stream(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per model of the ``result`` event's stats (or one for the whole run)."""
    session_id: str | None = None
    model: str | None = None
    result: JsonObj | None = None
    for rec in records:
        ctx.line = rec.line
        event = as_obj(rec.value, ctx, "event")
        kind = event.get("type")
        if kind == "init":
            session_id = get_str(event, "session_id", ctx)
            model = get_str(event, "model", ctx)
        elif kind == "result":
            result = event
    if result is None:
        ctx.warn("no result event: the stream was cut off and reported no usage")
        return [], None
    stats = get_obj(result, "stats", ctx) or {}
    models = get_obj(stats, "models", ctx, "stats.models") or {}
    entries: list[tuple[str | None, JsonObj, str]] = [
        (m, as_obj(v, ctx, f"stats.models.{m}"), f"stats.models.{m}") for m, v in models.items()
    ]
    if not entries and stats:
        entries = [(model, stats, "stats")]
    calls = [
        Call(
            usage=_stream_usage(s, ctx, where),
            source=STREAM,
            model=m,
            provider=PROVIDER,
            dedupe_key=join_key(session_id, m),
            session_id=session_id,
        )
        for m, s, where in entries
    ]
    summary = Summary(
        session_id=session_id,
        duration_ms=count(stats, "duration_ms", ctx, "stats.duration_ms"),
        is_error=result.get("status") not in (None, "success"),
        subtype=get_str(result, "status", ctx),
    )
    return calls, summary


def _chat_usage(t: Mapping[str, Any], ctx: Ctx, where: str) -> Usage:
    # A recording's ``tokens`` copy the response's usageMetadata (chatRecordingService's
    # recordMessageTokens): input = promptTokenCount (cache included), output = candidates
    # (thoughts excluded), tool = toolUsePromptTokenCount (in neither).
    cached = count(t, "cached", ctx, f"{where}.cached")
    prompt = count(t, "input", ctx, f"{where}.input")
    uncached = None if prompt is None else sub(prompt, cached or 0, ctx, f"{where}.input", "cached")
    thoughts = count(t, "thoughts", ctx, f"{where}.thoughts")
    return make_usage(
        ctx,
        input_tokens=plus(uncached, count(t, "tool", ctx, f"{where}.tool")),
        cache_read_tokens=cached,
        output_tokens=plus(count(t, "output", ctx, f"{where}.output"), thoughts),
        reasoning_tokens=thoughts,
    )


def _chat_messages(records: Sequence[Record], ctx: Ctx) -> tuple[str | None, list[JsonObj]]:
    """The session id and every message record, whether the recording is one JSON document
    (``{"sessionId", "messages": [...]}``) or JSON lines (a header line, message lines, and
    ``{"$set": {"messages": [...]}}`` rewrites on resume or compression)."""
    session_id: str | None = None
    messages: list[JsonObj] = []
    for rec in records:
        ctx.line = rec.line
        value = as_obj(rec.value, ctx, "record")
        session_id = session_id or get_str(value, "sessionId", ctx)
        update = value.get("$set")
        holder = update if isinstance(update, dict) else value
        listed = holder.get("messages")
        if isinstance(listed, list):
            messages.extend(m for m in listed if isinstance(m, dict))
        elif "type" in value and "id" in value:
            messages.append(value)
    return session_id, messages


def parse_chat(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``gemini`` message that carries ``tokens``; a message repeated by a
    rewrite counts once (keyed by session and message id, the larger copy kept)."""
    session_id, messages = _chat_messages(records, ctx)
    calls: dict[str, Call] = {}
    for index, message in enumerate(messages):
        tokens = message.get("tokens")
        if message.get("type") != "gemini" or not isinstance(tokens, dict):
            continue
        message_id = get_str(message, "id", ctx, f"messages[{index}].id")
        usage = _chat_usage(tokens, ctx, f"messages[{index}].tokens")
        key = join_key(session_id, message_id) if message_id else None
        call = Call(
            usage=usage,
            source=CHAT,
            model=get_str(message, "model", ctx, f"messages[{index}].model"),
            provider=PROVIDER,
            dedupe_key=key,
            message_id=message_id,
            started_at=timestamp(message.get("timestamp"), ctx, f"messages[{index}].timestamp"),
            session_id=session_id,
        )
        slot = key or f"#{index}"
        kept = calls.get(slot)
        if kept is None or (usage.total_tokens or 0) > (kept.usage.total_tokens or 0):
            calls[slot] = call
    return list(calls.values()), None
