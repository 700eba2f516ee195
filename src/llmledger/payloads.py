"""What a payload holds: the calls in anything ``Ledger.record`` or the service's ingest takes,
and their prices (a summary's reported per-model cost spread over that model's calls)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from llmledger.call import Call
from llmledger.errors import ParseError
from llmledger.pricing import Price, Pricer
from llmledger.usage import Usage

__all__ = [
    "INVALID_COST",
    "PayloadCalls",
    "calls_in",
    "missing_flags",
    "price_call",
    "price_calls",
]


@dataclass(slots=True)
class PayloadCalls:
    """The calls of one payload, the per-model costs its summary reports (if any), and what
    the parser skipped (each record it could not read, named)."""

    calls: list[Call]
    reported_by_model: Mapping[str, Decimal] = field(default_factory=dict)
    skipped: list[ParseError] = field(default_factory=list)


def calls_in(payload: Any, format: str | None = None) -> PayloadCalls:
    """The calls in ``payload``: a :class:`Call`, a :class:`Usage`, a
    :class:`~llmledger.sources.Parsed` (already parsed: the caller's to check), an SDK response
    object with ``model_dump()``, or anything :func:`llmledger.sources.parse` reads (``format``
    names the parser; default: detected). Raises :class:`ParseError` when nothing in it can be
    read."""
    if isinstance(payload, Call):
        return PayloadCalls([replace(payload, metadata=dict(payload.metadata))])
    if isinstance(payload, Usage):
        return PayloadCalls([Call(usage=payload, source="api")])
    from llmledger.sources import Parsed, parse

    if isinstance(payload, Parsed):
        parsed, skipped = payload, []
    else:
        if hasattr(payload, "model_dump"):  # pydantic models of the provider SDKs
            payload = payload.model_dump(mode="json", exclude_none=False)
        parsed = parse(payload, format=format)
        skipped = [
            ParseError(parsed.format, skip.message, line=skip.line)
            for skip in getattr(parsed, "skipped", None) or ()
        ]
    reported = getattr(parsed.summary, "reported_cost_by_model", None) or {}
    return PayloadCalls(parsed.calls, reported, skipped)


def missing_flags(call: Call, *, has_run: bool) -> list[str]:
    """The flags a stored call carries for what it lacks (``metadata["flags"]``): ``no_run``,
    ``no_model``, ``no_usage``. A call without them is still stored; the flags say why its
    totals may be incomplete."""
    lacks = (
        ("no_run", not has_run),
        ("no_model", call.model is None),
        ("no_usage", call.usage.is_empty),
    )
    return [flag for flag, missing in lacks if missing]


#: The price of a call whose caller gave a cost that could not be read (``bad_cost_usd`` in
#: its metadata flags): unknown, never guessed from the usage.
INVALID_COST = Price(None, "unpriced", None, "the cost_usd given was invalid")


def price_call(pricer: Pricer, call: Call) -> Price:
    """The call's price: :data:`INVALID_COST` for a call flagged ``bad_cost_usd`` (by
    ``record()``, here or on a remote ledger), else what ``pricer`` says."""
    flags = call.metadata.get("flags")
    if isinstance(flags, list) and "bad_cost_usd" in flags:
        return INVALID_COST
    return pricer.price(call)


def price_calls(
    pricer: Pricer, calls: Sequence[Call], reported_by_model: Mapping[str, Decimal]
) -> list[Price]:
    """A price for each call (:func:`price_call`); a cost the payload's summary reports for a
    model is spread over that model's calls (and wins over a computed one)."""
    prices = [price_call(pricer, call) for call in calls]
    if reported_by_model:
        from llmledger.pricing import apportion_reported

        prices = apportion_reported(list(zip(calls, prices, strict=True)), reported_by_model)
    return prices
