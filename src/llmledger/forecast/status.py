"""Writing a task's status: the one code path of ``Ledger.task_status``, ``llmledger task
status`` and ``POST /v1/tasks/{key}/status``.

A task is its key (and its project, when given). ``from_status`` defaults to the task's last
known status before the event's time, so an event written late (``at`` in the past) takes the
status the task was in then. Status names are the writer's own words: any is accepted. A
transition from a status the task is not in is stored all the same, with a warning; an event
for a task never seen creates it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llmledger.errors import UsageError
from llmledger.forecast.history import last_status
from llmledger.store import Repository

__all__ = ["STATUS_LENGTH", "StatusWrite", "write_status"]

_log = logging.getLogger("llmledger")

#: The longest status name the store keeps (``task_status_events.to_status``).
STATUS_LENGTH = 32


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """What writing an event did: stored (False: its event id was stored already), the
    transition as stored, and a warning when ``from_status`` was not the task's status."""

    key: str
    from_status: str | None
    to_status: str
    at: datetime
    stored: bool
    warning: str | None = None


def _checked_status(name: str, value: str | None) -> None:
    if value is None:
        return
    if not value.strip():
        raise UsageError(name, "a status name cannot be empty")
    if len(value) > STATUS_LENGTH:
        raise UsageError(name, f"a status name has at most {STATUS_LENGTH} characters")


def write_status(
    repo: Repository,
    key: str,
    to_status: str,
    *,
    from_status: str | None = None,
    at: datetime | None = None,
    agent_id: str | None = None,
    command_name: str | None = None,
    job: str | None = None,
    project: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    event_id: str | None = None,
) -> StatusWrite:
    """Store that task ``key`` moved to ``to_status`` at ``at`` (default: now). Raises
    :class:`UsageError` naming the field for an empty key or status, or a naive ``at``."""
    if not key:
        raise UsageError("key", "a task needs a key")
    _checked_status("to_status", to_status)
    _checked_status("from_status", from_status)
    if at is not None and at.tzinfo is None:
        raise UsageError("at", "give the time with its zone (2026-12-01T09:00+00:00)")
    moment = at or datetime.now(UTC)
    known = last_status(repo, key, project=project, before=moment)
    warning = None
    if from_status is None:
        from_status = known
    elif known is not None and from_status != known:
        warning = (
            f"task {key!r} was in {known!r} at {moment.isoformat()}, not {from_status!r}; "
            "the event is stored as written"
        )
        _log.warning("llmledger: %s", warning)
    stored = repo.add_status_event(
        to_status,
        run_id=run_id,
        task_key=key,
        from_status=from_status,
        at=moment,
        command_name=command_name,
        job=job,
        agent_id=agent_id,
        metadata=metadata,
        event_id=event_id,
        project=project,
    )
    return StatusWrite(key, from_status, to_status, moment, stored, warning)
