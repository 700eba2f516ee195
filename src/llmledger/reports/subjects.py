"""The usage of a workflow, a task or an agent, own and inclusive, by model: the summaries the
service's ``/v1/workflows/{key}/usage``, ``/v1/tasks/{key}/usage`` and
``/v1/agents/{id}/usage`` return.

A workflow or a task is every run of that kind with that external key (``llmledger run
--workflow nightly`` makes a workflow run per invocation; they add up). Its **own** usage is
the calls recorded directly in those runs; its **inclusive** usage adds every call in their
subtrees (attempts, sub-agents, nested tasks), each call counted once even where one matched
run sits inside another.

An agent is an agent id. Its **own** usage is the calls it made (``calls.agent_id``: imported
log calls and live calls alike); its **inclusive** usage adds every call in the subtrees of
the runs it did (``runs.agent_id``), so a parent agent never loses a sub-agent's cost.

Like the period reports it reads SQL text through the
:class:`~llmledger.store.sqlite_reader.Reader` protocol (no SQLAlchemy).
"""

from __future__ import annotations

from typing import Any, Literal

from llmledger.reports.filters import Filters, calls_where
from llmledger.reports.sums import calls_sums, sums_to_totals
from llmledger.store.sqlite_reader import Reader
from llmledger.totals import JSON_FIELDS, Totals
from llmledger.values import datetime_to_micros, micros_to_datetime

__all__ = ["SUBJECTS", "Subject", "subject_usage"]

Subject = Literal["workflow", "task", "agent"]
#: What :func:`subject_usage` summarizes.
SUBJECTS: tuple[str, ...] = ("workflow", "task", "agent")


def _matched_runs(subject: str) -> str:
    """The ``WHERE`` clause (one ``?``: the key or agent id) of the subject's runs."""
    return "agent_id = ?" if subject == "agent" else "kind = ? AND key = ?"


def _run_params(subject: str, key: str) -> list[Any]:
    return [key] if subject == "agent" else [subject, key]


def subject_usage(
    reader: Reader,
    subject: str,
    key: str,
    *,
    filters: Filters = Filters(),
    cost: str = "auto",
) -> dict[str, Any] | None:
    """The usage document of the workflow or task with external key ``key``, or of the agent
    with id ``key``; None when the ledger knows no such workflow or task run (for an agent: no
    run and no call with that id).

    Only calls ``filters`` select count (the service passes a time range). The document::

        {"subject": "workflow", "key": "nightly",
         "runs": 2, "first_started_at": ISO or null, "last_started_at": ISO or null,
         "own": totals, "inclusive": totals,
         "models": [{"model": name or null, "own": totals, "inclusive": totals}, ...]}

    with totals in the reports' shape (:data:`~llmledger.totals.JSON_FIELDS`) and ``models``
    sorted by name (a call with no model last), every model of the inclusive usage listed.
    """
    if subject not in SUBJECTS:
        raise ValueError(f"unknown subject {subject!r}: one of {', '.join(SUBJECTS)}")
    matched, run_params = _matched_runs(subject), _run_params(subject, key)
    count, first, last = reader.fetch(
        f"SELECT COUNT(*), MIN(started_at), MAX(started_at) FROM runs WHERE {matched}", run_params
    )[0]
    if not count and (subject != "agent" or not _any_call(reader, key)):
        return None
    tree = (
        f"WITH RECURSIVE tree(id) AS (SELECT id FROM runs WHERE {matched} "
        "UNION SELECT runs.id FROM runs JOIN tree ON runs.parent_id = tree.id) "
    )
    own_where = f"run_id IN (SELECT id FROM runs WHERE {matched})"
    inclusive_where = "run_id IN (SELECT id FROM tree)"
    own_params, inclusive_params = list(run_params), []
    if subject == "agent":
        own_where = "agent_id = ?"
        own_params = [key]
        inclusive_where = f"({own_where} OR {inclusive_where})"
        inclusive_params = [key]
    since = None if filters.since is None else datetime_to_micros(filters.since)
    until = None if filters.until is None else datetime_to_micros(filters.until)
    where, params = calls_where(filters, since, until)
    where = f"{where} AND " if where else "WHERE "
    sums = ", ".join(calls_sums(reader, cost))
    own_rows = reader.fetch(
        f"SELECT model, {sums} FROM calls {where}{own_where} GROUP BY model",
        [*params, *own_params],
    )
    inclusive_rows = reader.fetch(
        f"{tree}SELECT model, {sums} FROM calls {where}{inclusive_where} GROUP BY model",
        [*run_params, *params, *inclusive_params],
    )
    own = _by_model(own_rows)
    inclusive = _by_model(inclusive_rows)
    models = sorted(set(own) | set(inclusive), key=lambda m: (m is None, m or ""))
    first_at, last_at = micros_to_datetime(first), micros_to_datetime(last)
    return {
        "subject": subject,
        "key": key,
        "runs": int(count),
        "first_started_at": None if first_at is None else first_at.isoformat(),
        "last_started_at": None if last_at is None else last_at.isoformat(),
        "own": Totals.total(own.values()).to_dict(JSON_FIELDS),
        "inclusive": Totals.total(inclusive.values()).to_dict(JSON_FIELDS),
        "models": [
            {
                "model": model,
                "own": own.get(model, Totals()).to_dict(JSON_FIELDS),
                "inclusive": inclusive.get(model, Totals()).to_dict(JSON_FIELDS),
            }
            for model in models
        ],
    }


def _any_call(reader: Reader, agent: str) -> bool:
    """Whether any call (at any time) carries the agent id: an agent whose calls all fall
    outside the time range is still known."""
    return bool(reader.fetch("SELECT 1 FROM calls WHERE agent_id = ? LIMIT 1", [agent]))


def _by_model(rows: list[tuple[Any, ...]]) -> dict[str | None, Totals]:
    return {model: sums_to_totals(values) for model, *values in rows}
