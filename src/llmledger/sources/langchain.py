"""LangChain ``UsageMetadata``: one object, or ``UsageMetadataCallbackHandler.usage_metadata``
(a map of model name to ``UsageMetadata``), or a message dump carrying ``usage_metadata``.

``input_tokens`` is cache-inclusive for every integration. Cache reads are ``cache_read`` and
tier-prefixed ``*_cache_read`` keys; cache writes ``cache_creation`` / ``*_cache_creation`` or the
``ephemeral_5m/1h_input_tokens`` split (langchain-anthropic and langchain-aws zero
``cache_creation`` when they split it, so the larger of the two readings is taken). The bare
``priority`` / ``flex`` keys re-express input and output and are ignored (traps 9, 10).
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
    guess_provider,
    make_usage,
    plus,
    sub,
)
from llmledger.usage import Usage

FORMAT = "langchain_usage_metadata_callback"


def is_usage_metadata(value: object) -> bool:
    """Whether ``value`` looks like one LangChain ``UsageMetadata``."""
    return (
        isinstance(value, dict)
        and "input_tokens" in value
        and "output_tokens" in value
        and "input_tokens_details" not in value  # OpenAI Responses usage
        and "prompt_tokens" not in value
    )


def _tiered(details: Mapping[str, Any], name: str, ctx: Ctx, where: str) -> int | None:
    return plus(
        *(
            count(details, key, ctx, f"{where}.{key}")
            for key in details
            if key == name or key.endswith("_" + name)
        )
    )


def langchain_usage(u: Mapping[str, Any], ctx: Ctx, where: str = "usage_metadata") -> Usage:
    """Normalize one ``UsageMetadata`` dict."""
    inp = get_obj(u, "input_token_details", ctx, f"{where}.input_token_details") or {}
    out = get_obj(u, "output_token_details", ctx, f"{where}.output_token_details") or {}
    d = f"{where}.input_token_details"
    read = _tiered(inp, "cache_read", ctx, d)
    created = _tiered(inp, "cache_creation", ctx, d)
    five = count(inp, "ephemeral_5m_input_tokens", ctx, f"{d}.ephemeral_5m_input_tokens")
    one = count(inp, "ephemeral_1h_input_tokens", ctx, f"{d}.ephemeral_1h_input_tokens")
    split = plus(five, one)
    written = created if split is None or (created is not None and created > split) else split
    return make_usage(
        ctx,
        input_tokens=sub(
            count(u, "input_tokens", ctx, f"{where}.input_tokens"),
            (read or 0) + (written or 0),
            ctx,
            f"{where}.input_tokens",
            "cache_read + cache_creation",
        ),
        cache_read_tokens=read,
        cache_write_tokens=written,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=one,
        output_tokens=count(u, "output_tokens", ctx, f"{where}.output_tokens"),
        reasoning_tokens=_tiered(out, "reasoning", ctx, f"{where}.output_token_details"),
    )


def _call(u: Mapping[str, Any], model: str | None, ctx: Ctx, where: str) -> Call:
    usage = langchain_usage(u, ctx, where)
    meta: dict[str, Any] = {}
    total = u.get("total_tokens")
    if isinstance(total, int) and total != usage.total_tokens:
        # Gemini's tool-use prompt tokens are in total_tokens but not in input_tokens (trap 12).
        meta["reported_total_tokens"] = total
    return Call(
        usage=usage, source=FORMAT, model=model, provider=guess_provider(model), metadata=meta
    )


def parse_usage_metadata(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per model (callback map), per UsageMetadata, or per message dump."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        obj = as_obj(rec.value, ctx, "usage_metadata")
        if is_usage_metadata(obj):
            calls.append(_call(obj, None, ctx, "usage_metadata"))
        elif isinstance(obj.get("usage_metadata"), dict):
            meta = get_obj(obj, "response_metadata", ctx) or {}
            model = get_str(meta, "model_name", ctx, "response_metadata.model_name")
            calls.append(_call(obj["usage_metadata"], model, ctx, "usage_metadata"))
        else:
            for model, u in obj.items():
                calls.append(_call(as_obj(u, ctx, model), model, ctx, model))
    return calls, None
