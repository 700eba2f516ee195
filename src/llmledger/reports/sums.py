"""The sums every report reads from ``calls`` and how they become :class:`~llmledger.totals.Totals`:
the SQL for them, adding them up where None is unknown (not 0), and :class:`ReportRow`, the row
(period or session, totals, per-model breakdown) that the period and sessions reports return.

A cost is the sum of the known costs plus the count of unpriced calls, never hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmledger.reports.filters import COST_MODES
from llmledger.store.rollup import SUMMED, cost_expressions
from llmledger.store.sqlite_reader import Reader
from llmledger.totals import Totals
from llmledger.usage import Usage
from llmledger.values import money_from_pico

__all__ = ["ReportRow", "add_sums", "calls_sums", "sums_to_totals"]


@dataclass(slots=True)
class ReportRow:
    """One row of a report: its period (or session), totals, and totals per model; a
    session's also per subagent (``agents``: (subagent, its type) -> totals, the main
    thread's under (None, None))."""

    period: str | None
    totals: Totals = field(default_factory=Totals)
    breakdown: dict[str | None, Totals] = field(default_factory=dict)
    session_id: str | None = None
    project: str | None = None
    first_at: datetime | None = None
    last_at: datetime | None = None
    agents: dict[tuple[str | None, str | None], Totals] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        """The models used, by name (Claude Code's ``<synthetic>`` error placeholder left out)."""
        return sorted(m for m in self.breakdown if m is not None and m != "<synthetic>")

    def add(self, model: str | None, totals: Totals) -> None:
        """Add a model's totals to the row and its breakdown."""
        self.totals = self.totals + totals
        self.breakdown[model] = self.breakdown.get(model, Totals()) + totals


def calls_sums(reader: Reader, cost: str) -> list[str]:
    """SQL for the sums reports read from ``calls``, in the order :func:`sums_to_totals`
    takes them."""
    if cost not in COST_MODES:
        raise ValueError(f"unknown cost mode {cost!r}: one of {', '.join(COST_MODES)}")
    money = cost_expressions("calls", reader.dialect)[cost]
    sums = [f"SUM({n})" for n in SUMMED]
    return [
        *sums,
        f"SUM({money})",
        f"SUM(CASE WHEN ({money}) IS NULL THEN 1 ELSE 0 END)",
        "COUNT(*)",
    ]


def add_sums(slot: list[Any], values: Sequence[Any]) -> None:
    """Add SQL sums ``values`` into ``slot`` element-wise, where None is unknown (not 0)."""
    for i, value in enumerate(values):
        if value is not None:
            current = slot[i]
            slot[i] = value if current is None else current + value


def sums_to_totals(values: Sequence[Any]) -> Totals:
    """Totals from SQL sums in the order reports select them: input, cache read, cache
    write, output and reasoning tokens, cost in pico-dollars, unpriced calls, calls."""
    *tokens, cost, unpriced, count = values
    return Totals(
        usage=Usage.of_sums(
            **{n: None if v is None else int(v) for n, v in zip(SUMMED, tokens, strict=True)}
        ),
        cost_usd=money_from_pico(cost),
        unpriced_calls=int(unpriced or 0),
        calls=int(count),
    )
