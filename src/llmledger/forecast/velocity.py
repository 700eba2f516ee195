"""Lane velocity: how many hours a task spends in each lane (pure functions).

A lane's samples are its finished visits (:func:`~llmledger.forecast.timeline.lane_samples`)
that ended at or before the moment asked about; the last ``window`` of them by end time are
used. The velocity ``d`` of a lane, by mode:

- ``empirical``: the mean of the samples (``events``); for the first lane without samples,
  the mean duration of finished task runs (``runs``); else the lanes file's hours (``config``).
- ``config``: the lanes file's hours; a lane without hours falls back to ``empirical``.
- ``mixed``: ``alpha`` × empirical + (1 − ``alpha``) × config where both are known
  (``mixed``), else whichever is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import fmean, median
from typing import Any, Literal

from llmledger.forecast.lanes import LaneSet
from llmledger.forecast.timeline import Sample, StatusEvent, by_task, lane_samples

__all__ = ["MODES", "LaneVelocity", "Mode", "TaskRun", "lane_velocities", "samples_of"]

Mode = Literal["empirical", "config", "mixed"]
MODES: tuple[str, ...] = ("empirical", "config", "mixed")


@dataclass(frozen=True, slots=True)
class TaskRun:
    """A finished run of kind ``task``: its key, when it ended, how long it took and its
    inclusive cost (None: unknown)."""

    key: str
    finished_at: datetime
    hours: float | None
    status: str
    cost_usd: Any = None
    agent_id: str | None = None


@dataclass(frozen=True, slots=True)
class LaneVelocity:
    """One lane's samples and the velocity estimates use (``velocity_hours``; None: unknown)."""

    lane: str
    start: str
    end: str
    samples: int
    mean_hours: float | None
    median_hours: float | None
    velocity_hours: float | None
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON row of ``llmledger velocity``."""
        return {
            "lane": self.lane,
            "from": self.start,
            "to": self.end,
            "samples": self.samples,
            "mean_hours": self.mean_hours,
            "median_hours": self.median_hours,
            "velocity_hours": self.velocity_hours,
            "source": self.source,
        }


def samples_of(
    events: Iterable[StatusEvent],
    lanes: LaneSet,
    at: datetime,
    *,
    agent: str | None = None,
) -> dict[str, list[Sample]]:
    """Every lane's samples ending at or before ``at``, oldest first (``agent``: only visits
    begun, else ended, by that agent)."""
    found: dict[str, list[Sample]] = {lane.name: [] for lane in lanes.lanes}
    for task_events in by_task(events, at).values():
        for lane in lanes.lanes:
            for sample in lane_samples(task_events, lane, lanes.blocked, at):
                if agent is None or sample.agent_id == agent:
                    found[lane.name].append(sample)
    for samples in found.values():
        samples.sort(key=lambda s: (s.end, s.start))
    return found


def _run_hours(
    runs: Sequence[TaskRun], at: datetime, window: int, agent: str | None
) -> list[float]:
    finished = [
        r
        for r in runs
        if r.finished_at <= at
        and r.hours is not None
        and r.status == "succeeded"
        and (agent is None or r.agent_id == agent)
    ]
    finished.sort(key=lambda r: r.finished_at)
    return [r.hours for r in finished[-window:] if r.hours is not None]


def lane_velocities(
    events: Iterable[StatusEvent],
    lanes: LaneSet,
    at: datetime,
    *,
    runs: Sequence[TaskRun] = (),
    window: int = 10,
    mode: Mode = "empirical",
    alpha: float = 0.5,
    agent: str | None = None,
    samples: Mapping[str, Sequence[Sample]] | None = None,
) -> list[LaneVelocity]:
    """The velocity of every lane at ``at`` (see the module's docstring). ``samples``: the
    lanes' samples worked out once at a later moment (:func:`samples_of`), for speed; a
    sample depends only on the events up to its end, so those ending by ``at`` are used."""
    if window < 1:
        raise ValueError("window: at least 1 sample")
    if not 0 <= alpha <= 1:
        raise ValueError("alpha: between 0 and 1")
    if samples is None:
        found = samples_of(events, lanes, at, agent=agent)
    else:
        found = {name: [s for s in items if s.end <= at] for name, items in samples.items()}
    result = []
    for index, lane in enumerate(lanes.lanes):
        hours = [s.hours for s in found[lane.name][-window:]]
        source: str | None = "events" if hours else None
        if not hours and index == 0:
            hours = _run_hours(runs, at, window, agent)
            source = "runs" if hours else None
        mean = fmean(hours) if hours else None
        velocity, used = _choose(mean, source, lane.hours, mode, alpha)
        result.append(
            LaneVelocity(
                lane.name,
                lane.start,
                lane.end,
                len(hours),
                mean,
                median(hours) if hours else None,
                velocity,
                used,
            )
        )
    return result


def _choose(
    empirical: float | None, source: str | None, config: float | None, mode: Mode, alpha: float
) -> tuple[float | None, str | None]:
    if mode == "mixed" and empirical is not None and config is not None:
        return alpha * empirical + (1 - alpha) * config, "mixed"
    if mode == "config" and config is not None:
        return config, "config"
    if empirical is not None:
        return empirical, source
    if config is not None:
        return config, "config"
    return None, None
