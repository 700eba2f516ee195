"""Anthropic Messages API: a ``Message`` object and the SSE event stream.

Anthropic counts are exclusive: ``input_tokens`` excludes cache reads and writes, so nothing is
subtracted. Cache writes are ``max(cache_creation_input_tokens, 5m + 1h)`` because the two have
been seen to disagree (usage-formats.md trap 8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmledger.call import Call
from llmledger.sources._common import (
    Ctx,
    Record,
    Summary,
    as_obj,
    count,
    get_obj,
    get_str,
    make_usage,
    plus,
)
from llmledger.usage import MAX_TOKENS, Usage

MESSAGES = "anthropic_messages"
STREAM = "anthropic_messages_stream"
PROVIDER = "anthropic"

STREAM_EVENTS = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
    }
)


def anthropic_usage(u: Mapping[str, Any], ctx: Ctx, prefix: str = "usage") -> Usage:
    """Normalize an Anthropic ``usage`` object (also used by Claude Code and transcripts)."""
    split = u.get("cache_creation")
    five = one = None
    if split is not None:
        split = as_obj(split, ctx, f"{prefix}.cache_creation")
        five = count(split, "ephemeral_5m_input_tokens", ctx, f"{prefix}.cache_creation.5m")
        one = count(split, "ephemeral_1h_input_tokens", ctx, f"{prefix}.cache_creation.1h")
    written = count(u, "cache_creation_input_tokens", ctx, f"{prefix}.cache_creation_input_tokens")
    split_sum = plus(five, one)
    if split_sum is not None and (written is None or split_sum > written):
        written = split_sum
    details = get_obj(u, "output_tokens_details", ctx, f"{prefix}.output_tokens_details")
    reasoning = None
    if details is not None:
        reasoning = count(details, "thinking_tokens", ctx, f"{prefix}.thinking_tokens")
    return make_usage(
        ctx,
        input_tokens=count(u, "input_tokens", ctx, f"{prefix}.input_tokens"),
        cache_read_tokens=count(u, "cache_read_input_tokens", ctx, f"{prefix}.cache_read"),
        cache_write_tokens=written,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=one,
        output_tokens=count(u, "output_tokens", ctx, f"{prefix}.output_tokens"),
        reasoning_tokens=reasoning,
    )


def fast_anthropic_usage(u: Mapping[str, Any]) -> Usage | None:
    """:func:`anthropic_usage` for the common well-formed shape; None means "use the full one".

    The bulk importer calls this per transcript line, so it avoids per-field helper calls.
    """
    counts = plain_anthropic_counts(u)
    return None if counts is None else Usage(*counts)


def plain_anthropic_counts(
    u: Mapping[str, Any],
) -> tuple[int | None, int | None, int | None, int | None, int | None, int | None] | None:
    """The buckets :func:`anthropic_usage` gives a usage of plain non-negative counts, as
    (input, cache read, cache write, of it 5m, of it 1h, output); None for any other shape.

    A Usage built from them is always valid: the cache-write total is at least 5m + 1h.
    """
    inp = u.get("input_tokens")
    out = u.get("output_tokens")
    read = u.get("cache_read_input_tokens")
    written = u.get("cache_creation_input_tokens")
    split = u.get("cache_creation")
    five = one = None
    if split is not None:
        if type(split) is not dict:
            return None
        five = split.get("ephemeral_5m_input_tokens")
        one = split.get("ephemeral_1h_input_tokens")
    if "output_tokens_details" in u:
        return None
    return plain_counts(inp, out, read, written, five, one)


def plain_counts(
    inp: Any, out: Any, read: Any, written: Any, five: Any, one: Any
) -> tuple[int | None, int | None, int | None, int | None, int | None, int | None] | None:
    """:func:`plain_anthropic_counts` of the six counts read from a usage (input, output,
    cache read, cache write, of it 5m, of it 1h): None unless each is absent or a plain
    non-negative count."""
    for v in (inp, out, read, written, five, one):
        if v is not None and (type(v) is not int or v < 0 or v > MAX_TOKENS):
            return None
    if five is not None or one is not None:
        split_sum = (five or 0) + (one or 0)
        if written is None or split_sum > written:
            written = split_sum
    return inp, read, written, five, one, out


def usage_metadata(u: Mapping[str, Any]) -> dict[str, Any]:
    """The non-token facts of an Anthropic usage object worth keeping on a call."""
    meta: dict[str, Any] = {}
    tier = u.get("service_tier")
    if isinstance(tier, str):
        meta["service_tier"] = tier
    tools = u.get("server_tool_use")
    if isinstance(tools, dict):
        for key in ("web_search_requests", "web_fetch_requests"):
            n = tools.get(key)
            if isinstance(n, int) and not isinstance(n, bool) and n:
                meta[key] = n
    return meta


def _message_call(msg: Mapping[str, Any], usage: Usage, ctx: Ctx, source: str) -> Call:
    msg_id = get_str(msg, "id", ctx, "message.id")
    u = msg.get("usage")
    return Call(
        usage=usage,
        source=source,
        model=get_str(msg, "model", ctx, "message.model"),
        provider=PROVIDER,
        dedupe_key=msg_id,
        message_id=msg_id,
        metadata=usage_metadata(u) if isinstance(u, dict) else {},
    )


def parse_messages(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``Message`` object (a single message or a list of them)."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        msg = as_obj(rec.value, ctx, "message")
        u = get_obj(msg, "usage", ctx)
        usage = anthropic_usage(u, ctx) if u is not None else Usage()
        if u is None:
            ctx.warn("message has no usage")
        calls.append(_message_call(msg, usage, ctx, MESSAGES))
    return calls, None


def parse_stream(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``message_start``; each ``message_delta`` overwrites its usage field by field.

    Delta usage is cumulative, so adding it to the start usage would double-count (trap 7).
    """
    calls: list[Call] = []
    msg: dict[str, Any] | None = None
    usage: dict[str, Any] = {}
    saw_delta = False
    errored = False

    def flush() -> None:
        if msg is None and not usage:
            return
        if not saw_delta:
            ctx.warn("stream ended before message_delta; output_tokens is a placeholder")
        call = _message_call(msg or {}, anthropic_usage(usage, ctx), ctx, STREAM)
        if errored:
            call.status = "error"
        calls.append(call)

    for rec in records:
        ctx.line = rec.line
        event = as_obj(rec.value, ctx, "event")
        kind = event.get("type")
        if kind == "message_start":
            flush()
            msg = as_obj(event.get("message"), ctx, "message_start.message")
            usage = dict(get_obj(msg, "usage", ctx, "message.usage") or {})
            saw_delta = errored = False
        elif kind == "message_delta":
            delta = get_obj(event, "usage", ctx, "message_delta.usage") or {}
            usage.update({k: v for k, v in delta.items() if v is not None})
            saw_delta = True
        elif kind == "error":
            errored = True
    flush()
    return calls, None
