"""OpenAI: Chat Completions (object and stream chunks) and Responses (object and events).

OpenAI counts are inclusive: ``prompt_tokens`` / ``input_tokens`` contain cached tokens (and
cache writes where reported), ``completion_tokens`` / ``output_tokens`` contain reasoning. The
uncached input is found by subtraction, which raises rather than go negative.
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
    unix_seconds,
)
from llmledger.usage import Usage

CHAT = "openai_chat_completions"
CHAT_STREAM = "openai_chat_completions_stream"
RESPONSES = "openai_responses"
RESPONSES_STREAM = "openai_responses_stream"
#: The top-level fields of a chat completion that the parser reads (what an integration keeps
#: of an SDK object before parsing it).
CHAT_FIELDS = {"id", "object", "model", "created", "usage", "service_tier"}
#: The top-level fields of a Responses API object that the parser reads.
RESPONSES_FIELDS = {
    "id",
    "object",
    "model",
    "created_at",
    "completed_at",
    "status",
    "error",
    "usage",
    "service_tier",
}
PROVIDER = "openai"

#: Events that carry the final ``response`` (with usage) of a Responses stream.
TERMINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})


def _usage(
    u: Mapping[str, Any], ctx: Ctx, *, input_key: str, output_key: str, details_key: str
) -> Usage:
    details = get_obj(u, details_key, ctx) or {}
    out_details_key = (
        "completion_tokens_details"
        if output_key == "completion_tokens"
        else ("output_tokens_details")
    )
    out_details = get_obj(u, out_details_key, ctx) or {}
    cached = count(details, "cached_tokens", ctx, f"{details_key}.cached_tokens")
    written = count(details, "cache_write_tokens", ctx, f"{details_key}.cache_write_tokens")
    five, one = _ttl_split(details, ctx, details_key)
    split = plus(five, one)
    if split is not None and (written is None or split > written):
        written = split
    usage = make_usage(
        ctx,
        input_tokens=sub(
            count(u, input_key, ctx),
            (cached or 0) + (written or 0),
            ctx,
            input_key,
            "cached_tokens + cache_write_tokens",
        ),
        cache_read_tokens=cached,
        cache_write_tokens=written,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=one,
        output_tokens=count(u, output_key, ctx),
        reasoning_tokens=count(out_details, "reasoning_tokens", ctx, "reasoning_tokens"),
    )
    reported = count(u, "total_tokens", ctx)
    if reported is not None and usage.total_tokens is not None and reported != usage.total_tokens:
        ctx.warn(f"total_tokens {reported} differs from the sum of the parts {usage.total_tokens}")
    return usage


def _ttl_split(
    details: Mapping[str, Any], ctx: Ctx, details_key: str
) -> tuple[int | None, int | None]:
    """The 5m / 1h split of the cache writes, as LiteLLM reports Anthropic's
    (``cache_creation_token_details``); OpenAI itself reports none."""
    where = f"{details_key}.cache_creation_token_details"
    split = get_obj(details, "cache_creation_token_details", ctx, where)
    if split is None:
        return None, None
    return (
        count(split, "ephemeral_5m_input_tokens", ctx, f"{where}.ephemeral_5m_input_tokens"),
        count(split, "ephemeral_1h_input_tokens", ctx, f"{where}.ephemeral_1h_input_tokens"),
    )


def chat_usage(u: Mapping[str, Any], ctx: Ctx) -> Usage:
    """Normalize a Chat Completions ``CompletionUsage``."""
    return _usage(
        u,
        ctx,
        input_key="prompt_tokens",
        output_key="completion_tokens",
        details_key="prompt_tokens_details",
    )


def responses_usage(u: Mapping[str, Any], ctx: Ctx) -> Usage:
    """Normalize a Responses API ``ResponseUsage`` (same shape as Codex ``TokenUsage``)."""
    return _usage(
        u,
        ctx,
        input_key="input_tokens",
        output_key="output_tokens",
        details_key="input_tokens_details",
    )


def _call(obj: Mapping[str, Any], usage: Usage, ctx: Ctx, source: str) -> Call:
    rid = get_str(obj, "id", ctx)
    meta: dict[str, Any] = {}
    tier = obj.get("service_tier")
    if isinstance(tier, str):
        meta["service_tier"] = tier
    return Call(
        usage=usage,
        source=source,
        model=get_str(obj, "model", ctx),
        provider=PROVIDER,
        dedupe_key=rid,
        message_id=rid,
        metadata=meta,
    )


def parse_chat(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``chat.completion`` object."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        obj = as_obj(rec.value, ctx, "chat.completion")
        u = get_obj(obj, "usage", ctx)
        if u is None:
            ctx.warn("chat completion has no usage")
        call = _call(obj, chat_usage(u, ctx) if u else Usage(), ctx, CHAT)
        call.started_at = unix_seconds(obj.get("created"), ctx, "created")
        calls.append(call)
    return calls, None


def parse_chat_stream(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per completion id; usage comes from the extra final chunk (``choices == []``).

    Without ``stream_options.include_usage``, or when the stream was cut off, no chunk has
    usage: the call is still returned, with unknown usage, and a warning says so (trap 14).
    """
    chunks: dict[str | None, list[tuple[int | None, JsonObj]]] = {}
    for rec in records:
        ctx.line = rec.line
        chunk = as_obj(rec.value, ctx, "chunk")
        chunks.setdefault(get_str(chunk, "id", ctx), []).append((rec.line, chunk))
    calls = []
    for group in chunks.values():
        usage = Usage()
        found = False
        for line, chunk in group:
            u = get_obj(chunk, "usage", ctx)
            if u is not None:
                ctx.line = line
                usage, found = chat_usage(u, ctx), True
        ctx.line = None
        if not found:
            ctx.warn("chat stream has no usage chunk (include_usage off, or interrupted)")
        first = group[0][1]
        call = _call(first, usage, ctx, CHAT_STREAM)
        call.started_at = unix_seconds(first.get("created"), ctx, "created")
        calls.append(call)
    return calls, None


def _response_call(resp: Mapping[str, Any], ctx: Ctx, source: str) -> Call:
    u = get_obj(resp, "usage", ctx)
    if u is None:
        ctx.warn("response has no usage")
    call = _call(resp, responses_usage(u, ctx) if u else Usage(), ctx, source)
    call.started_at = unix_seconds(resp.get("created_at"), ctx, "created_at")
    call.finished_at = unix_seconds(resp.get("completed_at"), ctx, "completed_at")
    if resp.get("status") == "failed" or resp.get("error"):
        call.status = "error"
    return call


def parse_responses(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ``response`` object."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        calls.append(_response_call(as_obj(rec.value, ctx, "response"), ctx, RESPONSES))
    return calls, None


def parse_responses_stream(
    records: Sequence[Record], ctx: Ctx
) -> tuple[list[Call], Summary | None]:
    """One call per response whose terminal event (``response.completed`` …) was received."""
    final: dict[str | None, tuple[int | None, JsonObj]] = {}
    for rec in records:
        ctx.line = rec.line
        event = as_obj(rec.value, ctx, "event")
        if event.get("type") in TERMINAL_EVENTS:
            resp = as_obj(event.get("response"), ctx, "response")
            final[get_str(resp, "id", ctx, "response.id")] = (rec.line, resp)
    if not final:
        ctx.warn("no response.completed event: the stream was cut off and reported no usage")
    calls = []
    for line, resp in final.values():
        ctx.line = line
        calls.append(_response_call(resp, ctx, RESPONSES_STREAM))
    return calls, None
