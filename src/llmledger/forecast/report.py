"""The forecasts as the surfaces show them: read the store once, then the pure functions.

``velocity_report``, ``eta_report`` (with its cost and its backtest) and ``task_history``
(a task's transitions and the time spent in each status) raise :class:`NoHistory` when the
ledger holds no status event to work from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmledger.forecast.backtest import Backtest, run_backtest
from llmledger.forecast.cost import CostForecast, forecast_cost
from llmledger.forecast.eta import Eta, compute_eta
from llmledger.forecast.history import load_events, load_task_runs
from llmledger.forecast.lanes import LaneSet
from llmledger.forecast.timeline import History, Sample, StatusEvent, by_task, status_at
from llmledger.forecast.velocity import (
    LaneVelocity,
    Mode,
    TaskRun,
    lane_velocities,
    samples_of,
)
from llmledger.store import Repository

__all__ = [
    "EtaReport",
    "NoHistory",
    "Settings",
    "TaskHistory",
    "Transition",
    "eta_report",
    "task_history",
    "velocity_report",
]

#: What to run to write a first status event (shown when there is none).
FIRST_EVENT_HINT = "llmledger task status KEY in_progress"


class NoHistory(LookupError):
    """The ledger has no status event to forecast from; the message says how to write one."""

    def __init__(self, what: str = "no status history yet") -> None:
        super().__init__(f"{what}: write one with `{FIRST_EVENT_HINT}`")


@dataclass(frozen=True, slots=True)
class Settings:
    """How velocities are worked out (see :mod:`llmledger.forecast.velocity`)."""

    lanes: LaneSet
    window: int = 10
    mode: Mode = "empirical"
    alpha: float = 0.5
    project: str | None = None
    agent: str | None = None


def _velocities(
    events: Iterable[StatusEvent],
    runs: Sequence[TaskRun],
    settings: Settings,
    at: datetime,
    samples: Mapping[str, Sequence[Sample]] | None = None,
) -> list[LaneVelocity]:
    return lane_velocities(
        events,
        settings.lanes,
        at,
        runs=runs,
        window=settings.window,
        mode=settings.mode,
        alpha=settings.alpha,
        agent=settings.agent,
        samples=samples,
    )


def _load(repo: Repository, settings: Settings, at: datetime) -> list[StatusEvent]:
    events = load_events(repo, project=settings.project, until=at)
    if not events:
        raise NoHistory()
    return events


def velocity_report(repo: Repository, settings: Settings, at: datetime) -> list[LaneVelocity]:
    """Every lane's velocity at ``at`` from the events and task runs up to it."""
    events = _load(repo, settings, at)
    return _velocities(events, load_task_runs(repo, until=at), settings, at)


@dataclass(slots=True)
class EtaReport:
    """The ETA, the cost of the open tasks, and the backtest's record (None: not run)."""

    eta: Eta
    cost: CostForecast
    backtest: Backtest | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``llmledger eta``."""
        document = self.eta.to_dict()
        document["cost"] = self.cost.to_dict()
        if self.backtest is not None:
            document["backtest"] = {
                "points": len(self.backtest.points),
                "median_abs_error_pct": self.backtest.mape_pct,
                "bias_pct": self.backtest.bias_pct,
            }
        return document


def eta_report(
    repo: Repository,
    settings: Settings,
    at: datetime,
    *,
    workers: Mapping[str, int] | None = None,
    backlog: int = 0,
    points: int | None = 10,
) -> EtaReport:
    """The ETA at ``at`` (events and runs up to it only) with its cost, and the backtest over
    the last ``points`` usable completions before it (None: no backtest)."""
    events = History(_load(repo, settings, at))
    runs = load_task_runs(repo, until=at)
    # Worked out once: the backtest asks for the velocities at many earlier moments.
    samples = samples_of(events, settings.lanes, at, agent=settings.agent)

    def predict(moment: datetime, extra: int = 0) -> Eta:
        velocities = _velocities(events, runs, settings, moment, samples)
        return compute_eta(
            events, settings.lanes, velocities, moment, workers=workers, backlog=extra
        )

    eta = predict(at, backlog)
    done = settings.lanes.done
    completed = [
        key for (_, key), items in by_task(events, at).items() if items[-1].to_status == done
    ]
    cost = forecast_cost(eta.open_tasks, completed, runs, at)
    backtest = None
    if points is not None:
        backtest = run_backtest(events, settings.lanes, predict, points=points, until=at)
    return EtaReport(eta, cost, backtest)


def backtest_report(
    repo: Repository,
    settings: Settings,
    at: datetime,
    *,
    workers: Mapping[str, int] | None = None,
    points: int = 10,
) -> Backtest:
    """The ETA's backtest alone (``llmledger eta --backtest``)."""
    report = eta_report(repo, settings, at, workers=workers, points=points)
    assert report.backtest is not None
    return report.backtest


@dataclass(frozen=True, slots=True)
class Transition:
    """One event of a task and how long the task then stayed in its new status (hours up to
    the next event, or up to ``at`` for the current one: None once it is terminal)."""

    event: StatusEvent
    hours: float | None
    current: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        e = self.event
        return {
            "at": e.at.isoformat(),
            "from": e.from_status,
            "to": e.to_status,
            "hours": self.hours,
            "current": self.current,
            "agent_id": e.agent_id,
            "command_name": e.command_name,
            "job": e.job,
        }


@dataclass(frozen=True, slots=True)
class TaskHistory:
    """A task's transitions in time order and the hours it spent in each status."""

    key: str
    project: str | None
    status: str | None
    transitions: list[Transition]

    @property
    def hours_by_status(self) -> dict[str, float]:
        """Total hours per status (the current one counted up to the moment asked about)."""
        totals: dict[str, float] = {}
        for t in self.transitions:
            if t.hours is not None:
                totals[t.event.to_status] = totals.get(t.event.to_status, 0.0) + t.hours
        return totals

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``llmledger task show``."""
        return {
            "key": self.key,
            "project": self.project,
            "status": self.status,
            "transitions": [t.to_dict() for t in self.transitions],
            "hours_by_status": self.hours_by_status,
        }


def task_history(
    repo: Repository, key: str, lanes: LaneSet, at: datetime, *, project: str | None = None
) -> TaskHistory:
    """Task ``key``'s transitions up to ``at``; :class:`NoHistory` when it has none."""
    events = load_events(repo, project=project, key=key, until=at)
    if not events:
        raise NoHistory(f"no status history yet for task {key!r}")
    transitions = []
    for index, event in enumerate(events):
        last = index + 1 == len(events)
        end = at if last else events[index + 1].at
        terminal = last and event.to_status in lanes.terminal
        hours = None if terminal else (end - event.at).total_seconds() / 3600
        transitions.append(Transition(event, hours, last))
    return TaskHistory(key, project, status_at(events), transitions)
