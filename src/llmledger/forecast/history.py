"""Reading the store for the forecasts: status events and finished task runs, through the
repository's engine (read-only connections), as the pure functions of this package take them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from llmledger.forecast.timeline import StatusEvent
from llmledger.forecast.velocity import TaskRun
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import runs, task_status_events

__all__ = ["attempt_hours", "last_status", "load_events", "load_task_runs"]

_events = task_status_events


def _task_key() -> Any:
    # An event written for a run (``plan run``) may carry only the run: its key is the run's.
    return func.coalesce(_events.c.task_key, runs.c.key)


def load_events(
    repo: Repository,
    *,
    project: str | None = None,
    key: str | None = None,
    until: datetime | None = None,
) -> list[StatusEvent]:
    """Status events (of ``project`` and the task ``key`` when given; at or before ``until``),
    in timestamp order, then in the order they were stored."""
    task_key = _task_key()
    query = (
        select(
            task_key,
            _events.c.to_status,
            _events.c.at,
            _events.c.from_status,
            _events.c.project,
            _events.c.agent_id,
            _events.c.id,
            _events.c.command_name,
            _events.c.job,
        )
        .select_from(_events.outerjoin(runs, runs.c.id == _events.c.run_id))
        .where(task_key.is_not(None))
        .order_by(_events.c.at, _events.c.id)
    )
    if project is not None:
        query = query.where(_events.c.project == project)
    if key is not None:
        query = query.where(task_key == key)
    if until is not None:
        query = query.where(_events.c.at <= until)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = conn.execute(query).all()
    return [
        StatusEvent(
            key=row[0],
            to_status=row[1],
            at=row[2],
            from_status=row[3],
            project=row[4],
            agent_id=row[5],
            seq=int(row[6]),
            command_name=row[7],
            job=row[8],
        )
        for row in rows
    ]


def last_status(
    repo: Repository, key: str, *, project: str | None = None, before: datetime
) -> str | None:
    """The task's status just before ``before``: its last event earlier than that moment."""
    task_key = _task_key()
    query = (
        select(_events.c.to_status)
        .select_from(_events.outerjoin(runs, runs.c.id == _events.c.run_id))
        .where(task_key == key, _events.c.at < before)
        .order_by(_events.c.at.desc(), _events.c.id.desc())
        .limit(1)
    )
    if project is not None:
        query = query.where(_events.c.project == project)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return conn.execute(query).scalar()


def load_task_runs(repo: Repository, *, until: datetime | None = None) -> list[TaskRun]:
    """Finished runs of kind ``task`` with a key (at or before ``until``), oldest first:
    their durations stand in for the first lane's velocity, their costs price the forecast."""
    query = (
        select(
            runs.c.key,
            runs.c.finished_at,
            runs.c.duration_ms,
            runs.c.status,
            runs.c.cost_usd,
            runs.c.agent_id,
        )
        .where(runs.c.kind == "task", runs.c.key.is_not(None), runs.c.finished_at.is_not(None))
        .order_by(runs.c.finished_at)
    )
    if until is not None:
        query = query.where(runs.c.finished_at <= until)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = conn.execute(query).all()
    return [
        TaskRun(
            key=row[0],
            finished_at=row[1],
            hours=None if row[2] is None else row[2] / 3_600_000,
            status=row[3],
            cost_usd=row[4],
            agent_id=row[5],
        )
        for row in rows
    ]


def attempt_hours(repo: Repository, key: str, *, limit: int = 200) -> list[float]:
    """Hours of the last ``limit`` finished attempts (runs of kind ``attempt``) of the task
    runs with key ``key``, newest first: how long one try of that task takes."""
    task = runs.alias("task")
    query = (
        select(runs.c.duration_ms)
        .join(task, task.c.id == runs.c.parent_id)
        .where(
            runs.c.kind == "attempt",
            task.c.kind == "task",
            task.c.key == key,
            runs.c.duration_ms.is_not(None),
        )
        .order_by(runs.c.finished_at.desc())
        .limit(limit)
    )
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return [ms / 3_600_000 for ms in conn.execute(query).scalars()]
