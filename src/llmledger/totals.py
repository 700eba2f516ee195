"""Totals: usage plus cost over a set of calls, with the unpriced calls counted, never hidden."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmledger.usage import Usage

__all__ = ["Totals", "add_money"]


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

    def to_dict(self) -> dict[str, Any]:
        """Canonical usage fields, then ``cost_usd`` (a float, or None), ``unpriced_calls`` and
        ``calls`` — the shape every ``--json`` report uses."""
        out: dict[str, Any] = self.usage.to_dict()
        out["cost_usd"] = None if self.cost_usd is None else float(self.cost_usd)
        out["unpriced_calls"] = self.unpriced_calls
        out["calls"] = self.calls
        return out
