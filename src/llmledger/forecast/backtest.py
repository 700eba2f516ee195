"""How wrong the ETA has been: predictions at past moments against what happened (pure).

A point is a past completion event (a task reaching the last lane's end status) at time
``t``. The ETA is computed as it would have been at ``t`` — from the events at or before
``t`` alone — for the tasks open then, and compared with when those tasks all actually
reached a terminal status. Points whose tasks are not all done yet, or where no ETA could be
made, are left out; the last ``points`` usable ones are kept.

The error of a point is (predicted hours − actual hours) / actual hours, counted from ``t``:
positive when the ETA was late (the work finished before it said), negative when it was
early (the work took longer). The summary is the median absolute error and the median
signed error (the bias).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from statistics import median
from typing import Any

from llmledger.forecast.eta import Eta
from llmledger.forecast.lanes import LaneSet
from llmledger.forecast.timeline import StatusEvent, TaskId, by_task

__all__ = ["Backtest", "BacktestPoint", "run_backtest"]


@dataclass(frozen=True, slots=True)
class BacktestPoint:
    """One past moment: the ETA made then and when its tasks were really done."""

    at: datetime
    open_tasks: int
    predicted_at: datetime
    actual_at: datetime

    @property
    def predicted_hours(self) -> float:
        """Hours from the moment to the predicted finish."""
        return (self.predicted_at - self.at).total_seconds() / 3600

    @property
    def actual_hours(self) -> float:
        """Hours from the moment to the actual finish."""
        return (self.actual_at - self.at).total_seconds() / 3600

    @property
    def error_pct(self) -> float:
        """(predicted − actual) / actual, in percent: positive late, negative early."""
        return (self.predicted_hours - self.actual_hours) / self.actual_hours * 100

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "at": self.at.isoformat(),
            "open_tasks": self.open_tasks,
            "predicted_at": self.predicted_at.isoformat(),
            "actual_at": self.actual_at.isoformat(),
            "predicted_hours": self.predicted_hours,
            "actual_hours": self.actual_hours,
            "error_pct": self.error_pct,
        }


@dataclass(frozen=True, slots=True)
class Backtest:
    """The points, oldest first, and their median absolute and signed errors (None: none)."""

    points: list[BacktestPoint]

    @property
    def mape_pct(self) -> float | None:
        """The median absolute percentage error."""
        return median(abs(p.error_pct) for p in self.points) if self.points else None

    @property
    def bias_pct(self) -> float | None:
        """The median signed percentage error: positive late, negative early."""
        return median(p.error_pct for p in self.points) if self.points else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``llmledger eta --backtest``."""
        return {
            "points": [p.to_dict() for p in self.points],
            "median_abs_error_pct": self.mape_pct,
            "bias_pct": self.bias_pct,
        }


def _done_at(
    tasks: dict[TaskId, list[StatusEvent]], task: TaskId, after: datetime, lanes: LaneSet
) -> datetime | None:
    for event in tasks.get(task, []):
        if event.at > after and event.to_status in lanes.terminal:
            return event.at
    return None


def run_backtest(
    events: Iterable[StatusEvent],
    lanes: LaneSet,
    predict: Callable[[datetime], Eta],
    *,
    points: int = 10,
    until: datetime | None = None,
) -> Backtest:
    """Backtest ``predict`` (the ETA at a moment, from the events up to it) at the last
    ``points`` usable completion events at or before ``until`` (None: all)."""
    if points < 1:
        raise ValueError("points: at least 1")
    tasks = by_task(events, until)
    moments = sorted(
        {e.at for items in tasks.values() for e in items if e.to_status == lanes.done},
        reverse=True,
    )
    found: list[BacktestPoint] = []
    for moment in moments:
        if len(found) == points:
            break
        eta = predict(moment)
        if eta.finish_at is None or not eta.tasks:
            continue
        done = [_done_at(tasks, p.task, moment, lanes) for p in eta.tasks]
        if any(d is None for d in done):
            continue
        actual = max(d for d in done if d is not None)
        found.append(BacktestPoint(moment, len(eta.tasks), eta.finish_at, actual))
    found.reverse()
    return Backtest(found)
