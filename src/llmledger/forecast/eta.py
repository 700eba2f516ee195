"""When the open tasks will all be done: the ETA over the lanes (pure functions).

At ``at`` each open task stands in a lane or before one (:func:`timeline.position`). With
``d_i`` a lane's velocity and ``c_i`` its workers:

- ``R_i`` (remaining hours of lane i) = ``d_i`` for every open task that still has to pass
  lane i and is not in it, plus ``max(d_i − elapsed, 0)`` for every task in it;
- ``finish_i`` = ``max(at + R_i / c_i, finish_prev + d_i)``, ``finish_prev`` being the finish
  of the nearest earlier lane that still passes tasks on (none: ``at + R_i / c_i``); a lane
  no open task needs has no finish;
- the ETA is the last lane's finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from llmledger.forecast.lanes import LaneSet
from llmledger.forecast.timeline import Position, StatusEvent, TaskId, by_task, position
from llmledger.forecast.velocity import LaneVelocity

__all__ = ["Eta", "LaneEta", "compute_eta", "open_positions"]


@dataclass(frozen=True, slots=True)
class LaneEta:
    """One lane's part of the ETA."""

    velocity: LaneVelocity
    workers: int
    tasks_in_lane: int
    tasks_to_come: int
    remaining_hours: float | None
    finish_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON row of ``llmledger eta``."""
        v = self.velocity
        return {
            "lane": v.lane,
            "from": v.start,
            "to": v.end,
            "velocity_hours": v.velocity_hours,
            "source": v.source,
            "workers": self.workers,
            "tasks_in_lane": self.tasks_in_lane,
            "tasks_to_come": self.tasks_to_come,
            "remaining_hours": self.remaining_hours,
            "finish_at": _iso(self.finish_at),
        }


@dataclass(slots=True)
class Eta:
    """The ETA at ``at``: per lane, the open tasks, the finish (None: unknown, ``reason``)."""

    at: datetime
    lanes: list[LaneEta]
    open_tasks: int
    finish_at: datetime | None
    reason: str | None = None
    tasks: list[Position] = field(default_factory=list)

    @property
    def hours(self) -> float | None:
        """Hours from ``at`` to the finish (None: unknown)."""
        if self.finish_at is None:
            return None
        return (self.finish_at - self.at).total_seconds() / 3600

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``llmledger eta`` (without the cost and backtest parts)."""
        return {
            "at": _iso(self.at),
            "lanes": [lane.to_dict() for lane in self.lanes],
            "open_tasks": self.open_tasks,
            "finish_at": _iso(self.finish_at),
            "reason": self.reason,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def open_positions(
    events: Iterable[StatusEvent], lanes: LaneSet, at: datetime
) -> dict[TaskId, Position]:
    """Every task open at ``at`` and where it stands (events at or before ``at`` only)."""
    found: dict[TaskId, Position] = {}
    for task, task_events in by_task(events, at).items():
        where = position(task_events, lanes, at)
        if where is not None:
            found[task] = where
    return found


def compute_eta(
    events: Iterable[StatusEvent],
    lanes: LaneSet,
    velocities: Sequence[LaneVelocity],
    at: datetime,
    *,
    workers: Mapping[str, int] | None = None,
    backlog: int = 0,
) -> Eta:
    """The ETA at ``at`` of the tasks open then, plus ``backlog`` tasks not yet started."""
    if backlog < 0:
        raise ValueError("backlog: zero or more tasks")
    workers = workers or {}
    for name, count in workers.items():
        if all(lane.name != name for lane in lanes.lanes):
            raise ValueError(f"workers: no lane named {name!r}")
        if count < 1:
            raise ValueError(f"workers: lane {name!r} needs at least 1 worker")
    positions = list(open_positions(events, lanes, at).values())
    result: list[LaneEta] = []
    previous: datetime | None = None
    missing: list[str] = []
    for index, (lane, velocity) in enumerate(zip(lanes.lanes, velocities, strict=True)):
        inside = [p for p in positions if p.lane == index]
        to_come = backlog + sum(1 for p in positions if p.lane != index and p.next_lane <= index)
        count = workers.get(lane.name, 1)
        d = velocity.velocity_hours
        if not inside and not to_come:
            result.append(LaneEta(velocity, count, 0, 0, None, None))
            continue
        if d is None:
            missing.append(lane.name)
            result.append(LaneEta(velocity, count, len(inside), to_come, None, None))
            previous = None
            continue
        remaining = to_come * d + sum(max(d - p.elapsed_hours, 0.0) for p in inside)
        finish = at + timedelta(hours=remaining / count)
        if previous is not None:
            finish = max(finish, previous + timedelta(hours=d))
        result.append(LaneEta(velocity, count, len(inside), to_come, remaining, finish))
        previous = finish
    open_tasks = len(positions) + backlog
    if missing:
        reason = (
            f"no velocity for lane(s) {', '.join(missing)}: no finished visit in the events, "
            "and no hours for it in the lanes file"
        )
        return Eta(at, result, open_tasks, None, reason, positions)
    finishes = [lane.finish_at for lane in result if lane.finish_at is not None]
    if not finishes:
        return Eta(at, result, open_tasks, None, "no open tasks", positions)
    return Eta(at, result, open_tasks, finishes[-1], None, positions)
