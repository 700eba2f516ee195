"""Totals: usage plus cost over a set of calls, with the unpriced calls counted, never hidden;
and their JSON shape, written once (:meth:`Totals.to_dict`) for every surface.

:data:`JSON_FIELDS` is the shape every ``--json`` report (and the HTTP service, which returns the
CLI's JSON) gives totals. Two older surfaces keep the fields they have always printed, named
here so that each is a choice of fields rather than a shape of its own: :data:`RUN_FIELDS`
(``show``/``runs --json``, ``llmledger run``'s result: every stored bucket, in storage order,
with the cache-write split) and :data:`PLAN_FIELDS` (the plan reports: the cache hit rate, no
reasoning tokens or call count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmledger.usage import BUCKETS, Usage

__all__ = ["JSON_FIELDS", "PLAN_FIELDS", "RUN_FIELDS", "Totals", "add_money"]

#: The totals fields of every ``--json`` report and of the HTTP service: the one shape.
JSON_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_calls",
    "calls",
)
#: The fields of ``show``/``runs --json`` and ``llmledger run``'s result (``to_dict()``'s
#: default): every stored bucket in storage order, with the cache-write split.
RUN_FIELDS: tuple[str, ...] = (*BUCKETS, "total_tokens", "cost_usd", "unpriced_calls", "calls")
#: The fields of the plan reports (``usage-report.json``, the task log's usage line), to which
#: they add the agents' ``num_turns`` and ``duration_api_ms``.
PLAN_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_calls",
    "cache_hit_rate",
)


def add_money(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    """Add two amounts where None is "unknown": None + None = None, None + x = x."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@dataclass(frozen=True, slots=True)
class Totals:
    """The sum over some calls: their usage, the sum of their known costs, and how many calls
    had no cost (``unpriced_calls``), so that a total never passes for complete when it is not.
    """

    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    unpriced_calls: int = 0
    calls: int = 0

    def __add__(self, other: object) -> Totals:
        if not isinstance(other, Totals):
            return NotImplemented
        return Totals(
            usage=self.usage + other.usage,
            cost_usd=add_money(self.cost_usd, other.cost_usd),
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
            calls=self.calls + other.calls,
        )

    @classmethod
    def total(cls, items: Iterable[Totals]) -> Totals:
        """Sum totals; the sum of nothing is empty (usage all None, cost None)."""
        result = cls()
        for item in items:
            result = result + item
        return result

    def to_dict(self, fields: Sequence[str] = RUN_FIELDS) -> dict[str, Any]:
        """The JSON object of these totals: ``fields`` in that order (:data:`JSON_FIELDS` for
        reports). A token field is None where no call reported it; ``cost_usd`` is a float, or
        None when no call had a known cost; ``cache_hit_rate`` (cache reads over prompt tokens)
        is rounded to 4 places."""
        usage, cost = self.usage, self.cost_usd
        own: dict[str, Any] = {
            "cost_usd": None if cost is None else float(cost),
            "unpriced_calls": self.unpriced_calls,
            "calls": self.calls,
        }
        if "cache_hit_rate" in fields:
            rate = usage.cache_hit_rate
            own["cache_hit_rate"] = None if rate is None else round(rate, 4)
        # Any other field is the usage's: a bucket or total_tokens.
        return {name: own[name] if name in own else getattr(usage, name) for name in fields}
