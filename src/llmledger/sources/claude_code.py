"""Claude Code ``claude -p``: the ``--output-format json`` result and ``stream-json``.

The result's ``modelUsage`` is the authoritative per-model total (main loop, subagents,
compaction, helpers); ``usage`` covers the main loop only and goes into the summary.
stream-json repeats a message's whole usage on every content block (issue #6805), so its
assistant lines are grouped by ``message.id`` and counted once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from llmledger.call import Call
from llmledger.sources._common import (
    Ctx,
    JsonObj,
    Record,
    Summary,
    as_obj,
    count,
    get_bool,
    get_obj,
    get_str,
    join_key,
    make_usage,
    money,
    plus,
    timestamp,
)
from llmledger.sources.anthropic import PROVIDER, anthropic_usage, usage_metadata
from llmledger.usage import BUCKETS, Usage

RESULT = "claude_code_result"
STREAM = "claude_code_stream_json"

_MODEL_PROVIDERS = {"bedrock": "aws-bedrock", "vertex": "google-vertex"}


def parse_result(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per model of the (last) ``result``; works on the object or the --verbose array."""
    result = _last_result(records, ctx)
    if result is None:
        raise ctx.error('no object with "type": "result"')
    summary = _summary(result, ctx)
    return _result_calls(result, summary, ctx, _init_model(records)), summary


def parse_stream(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per API message, plus remainder calls up to the result's ``modelUsage``.

    A stream cut off before its result line keeps its per-message calls and has no summary.
    """
    groups: dict[str, list[tuple[JsonObj, JsonObj]]] = {}
    order: list[str | None] = []
    loose: list[tuple[JsonObj, JsonObj]] = []
    result: JsonObj | None = None
    for rec in records:
        ctx.line = rec.line
        line = as_obj(rec.value, ctx, "line")
        kind = line.get("type")
        if kind == "result":
            result = line
            continue
        if kind != "assistant":
            continue  # stream_event partials repeat usage already counted here (trap 6)
        msg = as_obj(line.get("message"), ctx, "message")
        if get_obj(msg, "usage", ctx, "message.usage") is None:
            continue
        msg_id = get_str(msg, "id", ctx, "message.id")
        if msg_id is None:
            loose.append((line, msg))
            order.append(None)
            continue
        if msg_id not in groups:
            groups[msg_id] = []
            order.append(msg_id)
        groups[msg_id].append((line, msg))
    ctx.line = None
    calls: list[Call] = []
    loose_iter = iter(loose)
    for msg_id in order:
        group = groups[msg_id] if msg_id is not None else [next(loose_iter)]
        calls.append(_message_call(group, ctx))
    summary = None
    if result is not None:
        summary = _summary(result, ctx)
        calls.extend(_remainders(calls, summary, result, ctx))
    return calls, summary


# -- stream-json messages -----------------------------------------------------------------------


def _message_call(group: list[tuple[JsonObj, JsonObj]], ctx: Ctx) -> Call:
    # Copies share input and cache fields; output may grow, so the largest copy wins.
    best: tuple[int, Usage, JsonObj, JsonObj] | None = None
    for line, msg in group:
        usage = anthropic_usage(as_obj(msg["usage"], ctx, "message.usage"), ctx, "message.usage")
        out = usage.output_tokens or 0
        if best is None or out >= best[0]:
            best = (out, usage, line, msg)
    assert best is not None
    _, usage, line, msg = best
    msg_id = get_str(msg, "id", ctx, "message.id")
    request_id = get_str(line, "request_id", ctx) or get_str(line, "requestId", ctx)
    meta = usage_metadata(msg["usage"])
    parent = line.get("parent_tool_use_id")
    if isinstance(parent, str):
        meta["parent_tool_use_id"] = parent
    return Call(
        usage=usage,
        source=STREAM,
        model=get_str(msg, "model", ctx, "message.model"),
        provider=PROVIDER,
        dedupe_key=join_key(msg_id, request_id),
        message_id=msg_id,
        request_id=request_id,
        started_at=timestamp(line.get("timestamp"), ctx),
        session_id=get_str(line, "session_id", ctx),
        status="error" if line.get("error") else "ok",
        metadata=meta,
    )


def _remainders(calls: list[Call], summary: Summary, result: JsonObj, ctx: Ctx) -> list[Call]:
    """Calls for what ``modelUsage`` holds beyond the streamed messages (subagents, compaction)."""
    seen: dict[str, Usage] = {}
    for call in calls:
        if call.model is not None:
            seen[call.model] = seen.get(call.model, Usage()) + call.usage
    out = []
    for model, reported in summary.model_usage.items():
        diff = _difference(reported, seen.get(model, Usage()), model, ctx)
        if diff is None:
            continue
        out.append(
            Call(
                usage=diff,
                source=STREAM,
                model=model,
                provider=PROVIDER,
                dedupe_key=join_key(summary.session_id, model, "remainder", _uuid(result, ctx)),
                session_id=summary.session_id,
                metadata={"remainder": True},
            )
        )
    return out


def _difference(reported: Usage, seen: Usage, model: str, ctx: Ctx) -> Usage | None:
    diff: dict[str, int | None] = {}
    for name in BUCKETS:
        r, s = getattr(reported, name), getattr(seen, name)
        diff[name] = None if r is None else r - (s or 0)
    token_buckets = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
    if not any((diff[n] or 0) > 0 for n in token_buckets):
        return None
    for name, value in diff.items():
        if value is not None and value < 0:
            # The messages are real usage; the result cannot un-count them.
            ctx.warn(f"{model}: streamed messages exceed modelUsage in {name} by {-value}")
            diff[name] = 0
    out, reasoning = diff["output_tokens"], diff["reasoning_tokens"]
    if reasoning is not None and (out is None or reasoning > out):
        diff["reasoning_tokens"] = None
    split = plus(diff["cache_write_5m_tokens"], diff["cache_write_1h_tokens"])
    if split is not None and (
        diff["cache_write_tokens"] is None or split > diff["cache_write_tokens"]
    ):
        diff["cache_write_5m_tokens"] = diff["cache_write_1h_tokens"] = None
    return make_usage(ctx, **diff)


# -- result -------------------------------------------------------------------------------------


def _last_result(records: Sequence[Record], ctx: Ctx) -> JsonObj | None:
    for rec in reversed(records):
        if isinstance(rec.value, dict) and rec.value.get("type") == "result":
            ctx.line = rec.line
            return rec.value
    return None


def _init_model(records: Sequence[Record]) -> str | None:
    for rec in records:
        v = rec.value
        if isinstance(v, dict) and v.get("type") == "system" and v.get("subtype") == "init":
            model = v.get("model")
            return model if isinstance(model, str) else None
    return None


def _uuid(result: Mapping[str, Any], ctx: Ctx) -> str | None:
    return get_str(result, "uuid", ctx)


def _total_cost(result: Mapping[str, Any], ctx: Ctx) -> Decimal | None:
    # Renamed from total_cost in CLI 1.0.22; older posts call it cost_usd.
    for key in ("total_cost_usd", "total_cost", "cost_usd"):
        if result.get(key) is not None:
            return money(result, key, ctx)
    return None


def _model_usages(result: Mapping[str, Any], ctx: Ctx) -> dict[str, tuple[Usage, JsonObj]]:
    per_model = get_obj(result, "modelUsage", ctx) or {}
    entries = {m: as_obj(v, ctx, f"modelUsage.{m}") for m, v in per_model.items()}
    has_ttl = any(
        "cacheCreationEphemeral5mInputTokens" in e or "cacheCreationEphemeral1hInputTokens" in e
        for e in entries.values()
    )
    fallback = None if has_ttl else _usage_split(result, entries, ctx)
    out = {}
    for model, e in entries.items():
        name = f"modelUsage.{model}"
        written = count(e, "cacheCreationInputTokens", ctx, f"{name}.cacheCreationInputTokens")
        five = count(e, "cacheCreationEphemeral5mInputTokens", ctx, f"{name}.5m")
        one = count(e, "cacheCreationEphemeral1hInputTokens", ctx, f"{name}.1h")
        if fallback is not None and written and written == fallback[0]:
            five, one = fallback[1], fallback[2]
        usage = make_usage(
            ctx,
            input_tokens=count(e, "inputTokens", ctx, f"{name}.inputTokens"),
            cache_read_tokens=count(e, "cacheReadInputTokens", ctx, f"{name}.cacheRead"),
            cache_write_tokens=written,
            cache_write_5m_tokens=five,
            cache_write_1h_tokens=one,
            output_tokens=count(e, "outputTokens", ctx, f"{name}.outputTokens"),
            reasoning_tokens=count(e, "thinkingTokens", ctx, f"{name}.thinkingTokens"),
        )
        out[model] = (usage, e)
    return out


def _usage_split(
    result: Mapping[str, Any], entries: Mapping[str, JsonObj], ctx: Ctx
) -> tuple[int, int | None, int | None] | None:
    """The TTL split of ``usage.cache_creation``, only when ``usage`` holds every cache write.

    Returns (total writes, 5m, 1h) or None when the split cannot be trusted (§10).
    """
    u = get_obj(result, "usage", ctx)
    split = get_obj(u, "cache_creation", ctx, "usage.cache_creation") if u else None
    if u is None or split is None:
        return None
    written = count(u, "cache_creation_input_tokens", ctx, "usage.cache_creation_input_tokens")
    total = plus(*(count(e, "cacheCreationInputTokens", ctx) for e in entries.values()))
    five = count(split, "ephemeral_5m_input_tokens", ctx, "usage.cache_creation.5m")
    one = count(split, "ephemeral_1h_input_tokens", ctx, "usage.cache_creation.1h")
    if written is None or written != total or (plus(five, one) or 0) > written:
        return None
    return written, five, one


def _summary(result: Mapping[str, Any], ctx: Ctx) -> Summary:
    u = get_obj(result, "usage", ctx)
    models = _model_usages(result, ctx)
    costs = {}
    for model, (_, entry) in models.items():
        cost = money(entry, "costUSD", ctx, f"modelUsage.{model}.costUSD")
        if cost is not None:
            costs[model] = cost
    return Summary(
        session_id=get_str(result, "session_id", ctx),
        duration_ms=count(result, "duration_ms", ctx),
        duration_api_ms=count(result, "duration_api_ms", ctx),
        num_turns=count(result, "num_turns", ctx),
        is_error=get_bool(result, "is_error", ctx),
        subtype=get_str(result, "subtype", ctx),
        stop_reason=get_str(result, "stop_reason", ctx),
        total_cost_usd=_total_cost(result, ctx),
        reported_cost_by_model=costs,
        usage=anthropic_usage(u, ctx) if u is not None else None,
        model_usage={m: usage for m, (usage, _) in models.items()},
    )


def _result_calls(
    result: Mapping[str, Any], summary: Summary, ctx: Ctx, default_model: str | None
) -> list[Call]:
    uuid = _uuid(result, ctx)
    base = Call(
        usage=Usage(),
        source=RESULT,
        provider=PROVIDER,
        session_id=summary.session_id,
        status="error" if summary.is_error else "ok",
    )
    models = _model_usages(result, ctx)
    if not models:
        # Older CLIs: no modelUsage, so the result's own usage and total cost are all we have.
        if summary.usage is None:
            return []
        return [
            replace(
                base,
                usage=summary.usage,
                model=default_model,
                dedupe_key=join_key(summary.session_id, default_model, uuid),
                reported_cost_usd=summary.total_cost_usd,
                metadata=usage_metadata(get_obj(result, "usage", ctx) or {}),
            )
        ]
    calls = []
    for model, (usage, entry) in models.items():
        meta: dict[str, Any] = {}
        for key in ("webSearchRequests", "canonicalModel", "costBasis", "provider"):
            if entry.get(key):
                meta[key] = entry[key]
        provider = entry.get("provider")
        calls.append(
            replace(
                base,
                usage=usage,
                model=model,
                provider=_MODEL_PROVIDERS.get(provider, PROVIDER)
                if isinstance(provider, str)
                else PROVIDER,
                dedupe_key=join_key(summary.session_id, model, uuid),
                reported_cost_usd=summary.reported_cost_by_model.get(model),
                metadata=meta,
            )
        )
    return calls
