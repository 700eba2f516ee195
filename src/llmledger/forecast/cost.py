"""What the open tasks will cost: from the cost of tasks already completed (pure).

A completed task's cost is the inclusive cost of its runs (kind ``task``, same key): the
runs' roll-ups include every attempt and sub-agent. The forecast is the number of open tasks
× the median (expected) and × the 90th percentile (nearest rank) of those costs. Tasks whose
runs are all unpriced are left out; with no priced completed task there is no forecast, and
``reason`` says why (never $0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from statistics import median
from typing import Any

from llmledger.forecast.velocity import TaskRun

__all__ = ["CostForecast", "forecast_cost", "p90"]


def p90(values: Sequence[Decimal]) -> Decimal:
    """The 90th percentile of ``values`` by nearest rank (one of the values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class CostForecast:
    """Expected and p90 cost of the open tasks; None with ``reason`` when unknown."""

    expected_usd: Decimal | None
    p90_usd: Decimal | None
    basis: str | None
    tasks_priced: int
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (money as floats)."""
        return {
            "expected_usd": None if self.expected_usd is None else float(self.expected_usd),
            "p90_usd": None if self.p90_usd is None else float(self.p90_usd),
            "basis": self.basis,
            "tasks_priced": self.tasks_priced,
            "reason": self.reason,
        }


def forecast_cost(
    open_tasks: int, completed_keys: Iterable[str], runs: Sequence[TaskRun], at: datetime
) -> CostForecast:
    """The cost of ``open_tasks`` tasks from the runs of the tasks ``completed_keys`` names
    (runs finished at or before ``at``)."""
    by_key: dict[str, list[Decimal]] = {}
    for run in runs:
        if run.finished_at <= at and run.cost_usd is not None:
            by_key.setdefault(run.key, []).append(Decimal(run.cost_usd))
    costs = [sum(by_key[key], Decimal(0)) for key in set(completed_keys) if key in by_key]
    if not costs:
        return CostForecast(
            None, None, None, 0, "no completed task has a priced run of kind task with its key"
        )
    if open_tasks == 0:
        return CostForecast(Decimal(0), Decimal(0), "no open tasks", len(costs))
    basis = f"open tasks × median and p90 of {len(costs)} completed task(s)"
    return CostForecast(
        open_tasks * Decimal(median(costs)), open_tasks * p90(costs), basis, len(costs)
    )
