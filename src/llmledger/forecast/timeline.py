"""A task's history read from its status events, in timestamp order (pure functions).

Events may be written out of order; everything here sorts them by time (then by the order
they were stored) and reads only those at or before the moment asked about. A lane *visit*
starts when a task enters the lane's start status, runs through time in a blocked status
(left out of its duration) and returns to the start status, and ends at the first later
transition to any other status; it is a *sample* only if that status is the lane's end.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from llmledger.forecast.lanes import Lane, LaneSet

__all__ = [
    "History",
    "Position",
    "Sample",
    "StatusEvent",
    "TaskId",
    "by_task",
    "lane_samples",
    "position",
    "status_at",
]

#: A task: (project, key); project is None when the events name none.
TaskId = tuple[str | None, str]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """One status transition (a ``task_status_events`` row); ``seq`` orders equal times."""

    key: str
    to_status: str
    at: datetime
    from_status: str | None = None
    project: str | None = None
    agent_id: str | None = None
    seq: int = 0
    command_name: str | None = None
    job: str | None = None

    @property
    def task(self) -> TaskId:
        """The task this event belongs to."""
        return (self.project, self.key)


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished visit of a lane: its hours exclude blocked time."""

    task: TaskId
    lane: str
    start: datetime
    end: datetime
    hours: float
    agent_id: str | None


@dataclass(frozen=True, slots=True)
class Position:
    """Where an open task stands at a moment: in lane ``lane`` (for ``elapsed_hours``, blocked
    time left out), or between lanes with ``next_lane`` the first it still has to pass."""

    task: TaskId
    status: str
    lane: int | None
    next_lane: int
    elapsed_hours: float = 0.0


def _ordered(events: Iterable[StatusEvent], at: datetime | None) -> list[StatusEvent]:
    chosen = [e for e in events if at is None or e.at <= at]
    chosen.sort(key=lambda e: (e.at, e.seq))
    return chosen


def by_task(
    events: Iterable[StatusEvent], at: datetime | None = None
) -> dict[TaskId, list[StatusEvent]]:
    """Each task's events at or before ``at`` (None: all), in timestamp order."""
    if isinstance(events, History):
        return events.until(at)
    tasks: dict[TaskId, list[StatusEvent]] = {}
    for event in _ordered(events, at):
        tasks.setdefault(event.task, []).append(event)
    return tasks


class History:
    """Events grouped by task in timestamp order, sorted once and cut at any moment: what a
    backtest uses, which asks for the same events at many moments."""

    def __init__(self, events: Iterable[StatusEvent]) -> None:
        self.tasks = by_task(events)
        self._times = {task: [e.at for e in items] for task, items in self.tasks.items()}

    def __iter__(self) -> Iterator[StatusEvent]:
        for items in self.tasks.values():
            yield from items

    def until(self, at: datetime | None) -> dict[TaskId, list[StatusEvent]]:
        """Each task's events at or before ``at`` (None: all); tasks with none left out."""
        if at is None:
            return dict(self.tasks)
        cut = {
            task: items[: bisect_right(self._times[task], at)] for task, items in self.tasks.items()
        }
        return {task: items for task, items in cut.items() if items}


def status_at(events: Sequence[StatusEvent], at: datetime | None = None) -> str | None:
    """The task's status at ``at``: its last event at or before it (None: no event yet)."""
    ordered = _ordered(events, at)
    return ordered[-1].to_status if ordered else None


def _hours(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 3600


def _visits(
    events: Sequence[StatusEvent], lane: Lane, blocked: frozenset[str], at: datetime
) -> list[tuple[datetime, datetime | None, float, str | None, str | None]]:
    # (start, end or None while open, active hours, the status that ended it, agent)
    visits: list[tuple[datetime, datetime | None, float, str | None, str | None]] = []
    start: datetime | None = None
    active = 0.0
    agent: str | None = None
    for index, event in enumerate(events):
        following = events[index + 1].at if index + 1 < len(events) else at
        if start is None:
            if event.to_status != lane.start:
                continue
            start, active, agent = event.at, 0.0, event.agent_id
        elif event.to_status not in blocked and event.to_status != lane.start:
            visits.append((start, event.at, active, event.to_status, agent or event.agent_id))
            start = None
            continue
        if event.to_status == lane.start:
            active += _hours(event.at, max(following, event.at))
    if start is not None:
        visits.append((start, None, active, None, agent))
    return visits


def lane_samples(
    events: Sequence[StatusEvent], lane: Lane, blocked: frozenset[str], at: datetime
) -> list[Sample]:
    """The samples of ``lane`` in one task's ordered ``events`` (those at or before ``at``)."""
    if not events:
        return []
    task = events[0].task
    return [
        Sample(task, lane.name, start, end, hours, agent)
        for start, end, hours, ended_on, agent in _visits(events, lane, blocked, at)
        if end is not None and ended_on == lane.end
    ]


def position(events: Sequence[StatusEvent], lanes: LaneSet, at: datetime) -> Position | None:
    """Where the task of the ordered ``events`` (at or before ``at``) stands; None when it is
    done (terminal) or has no event. A blocked task is in the lane it was in before; a status
    in no lane (``todo``) has every lane to pass; a lane's end status has passed that lane."""
    if not events:
        return None
    status = events[-1].to_status
    if status in lanes.terminal:
        return None
    task = events[-1].task
    effective = status
    if status in lanes.blocked:
        earlier = [e.to_status for e in events if e.to_status not in lanes.blocked]
        effective = earlier[-1] if earlier else status
    index = lanes.lane_index(effective)
    if index is not None:
        lane = lanes.lanes[index]
        visits = _visits(events, lane, lanes.blocked, at)
        elapsed = visits[-1][2] if visits and visits[-1][1] is None else 0.0
        return Position(task, status, index, index + 1, elapsed)
    passed = lanes.passed_index(effective)
    return Position(task, status, None, 0 if passed is None else passed + 1)
