"""AWS Bedrock Converse responses and ConverseStream ``metadata`` events.

Bedrock counts are exclusive: ``inputTokens`` excludes cache reads and writes. ``cacheDetails``
splits the writes by TTL. ``totalTokens`` has been observed to include the cache tokens; it is
only cross-checked (trap 17).
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
    get_list,
    get_obj,
    get_str,
    make_usage,
)
from llmledger.usage import Usage

FORMAT = "bedrock_converse"
STREAM = "bedrock_converse_stream"
PROVIDER = "aws-bedrock"

#: Top-level keys of ConverseStream events (boto3 shape: one key per event).
STREAM_EVENTS = frozenset(
    {"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop"}
)


def converse_usage(u: Mapping[str, Any], ctx: Ctx) -> Usage:
    """Normalize a Bedrock ``TokenUsage``."""
    written = count(u, "cacheWriteInputTokens", ctx, "usage.cacheWriteInputTokens")
    five = one = None
    details = get_list(u, "cacheDetails", ctx, "usage.cacheDetails")
    if details:
        five = one = other = 0
        for i, item in enumerate(details):
            entry = as_obj(item, ctx, f"usage.cacheDetails[{i}]")
            tokens = count(entry, "inputTokens", ctx, f"usage.cacheDetails[{i}].inputTokens") or 0
            ttl = entry.get("ttl")
            if ttl == "5m":
                five += tokens
            elif ttl == "1h":
                one += tokens
            else:
                ctx.warn(f"cache write with unknown TTL {ttl!r} counted without a split")
                other += tokens
        if written is None or five + one + other > written:
            written = five + one + other
    elif written == 0 and "cacheDetails" in u:
        five = one = 0  # "Empty if no cache creation occurred"
    usage = make_usage(
        ctx,
        input_tokens=count(u, "inputTokens", ctx, "usage.inputTokens"),
        cache_read_tokens=count(u, "cacheReadInputTokens", ctx, "usage.cacheReadInputTokens"),
        cache_write_tokens=written,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=one,
        output_tokens=count(u, "outputTokens", ctx, "usage.outputTokens"),
    )
    total = count(u, "totalTokens", ctx, "usage.totalTokens")
    if total is not None and usage.total_tokens is not None and total != usage.total_tokens:
        ctx.warn(f"totalTokens {total} differs from the sum of the parts {usage.total_tokens}")
    return usage


def _call(obj: Mapping[str, Any], ctx: Ctx, source: str) -> Call:
    u = get_obj(obj, "usage", ctx)
    metrics = get_obj(obj, "metrics", ctx) or {}
    response_meta = get_obj(obj, "ResponseMetadata", ctx) or {}
    request_id = get_str(response_meta, "RequestId", ctx, "ResponseMetadata.RequestId")
    meta: dict[str, Any] = {}
    stop = obj.get("stopReason")
    if isinstance(stop, str):
        meta["stop_reason"] = stop
    return Call(
        usage=converse_usage(u, ctx) if u is not None else Usage(),
        source=source,
        model=get_str(obj, "modelId", ctx),
        provider=PROVIDER,
        dedupe_key=request_id,
        request_id=request_id,
        duration_ms=count(metrics, "latencyMs", ctx, "metrics.latencyMs"),
        metadata=meta,
    )


def parse_converse(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per Converse response."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        calls.append(_call(as_obj(rec.value, ctx, "response"), ctx, FORMAT))
    return calls, None


def parse_stream(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per ConverseStream ``metadata`` event (which holds usage and latency)."""
    calls = []
    stop: str | None = None
    for rec in records:
        ctx.line = rec.line
        event = as_obj(rec.value, ctx, "event")
        message_stop = get_obj(event, "messageStop", ctx)
        if message_stop is not None:
            stop = get_str(message_stop, "stopReason", ctx, "messageStop.stopReason")
        metadata = get_obj(event, "metadata", ctx)
        if metadata is not None:
            call = _call(metadata, ctx, STREAM)
            if stop is not None:
                call.metadata["stop_reason"] = stop
            calls.append(call)
    if not calls:
        ctx.warn("no metadata event: the stream was cut off and reported no usage")
    return calls, None
