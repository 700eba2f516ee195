"""The sessions report: totals per agent session, with a per-model and a per-subagent
breakdown.

One query groups ``calls`` by (session, model, subagent); the rows are added up per session as
raw SQL sums, and turned into :class:`~llmledger.totals.Totals` once per session, per model and
per subagent (a Claude Code subagent's calls carry the parent's session id, so the session's
totals include them; the main thread's calls have no subagent). Like
:mod:`llmledger.reports.periods` it reads through the :class:`~llmledger.store.sqlite_reader.Reader`
protocol and does not import SQLAlchemy, so that ``llmledger sessions`` on a current SQLite
ledger starts quickly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmledger.reports.filters import Filters, calls_where
from llmledger.reports.sums import ReportRow, add_sums, calls_sums, sums_to_totals
from llmledger.store.sqlite_reader import Reader
from llmledger.values import datetime_to_micros, micros_to_datetime

__all__ = ["sessions_report"]


def sessions_report(
    reader: Reader, *, filters: Filters = Filters(), cost: str = "auto"
) -> list[ReportRow]:
    """Totals per session (``calls.session_id``) with a per-model and a per-subagent
    breakdown (``ReportRow.agents``), the project and the first and last call times; ordered
    by last activity.

    ``reader`` is a :class:`~llmledger.store.Repository` or a
    :class:`~llmledger.store.sqlite_reader.SqliteReader`."""
    since = None if filters.since is None else datetime_to_micros(filters.since)
    until = None if filters.until is None else datetime_to_micros(filters.until)
    where, params = calls_where(filters, since, until)
    sql = (
        "SELECT session_id, model, subagent, MAX(subagent_type), MAX(project), "
        f"MIN(started_at), MAX(started_at), {', '.join(calls_sums(reader, cost))} FROM calls "
        f"{where} GROUP BY session_id, model, subagent"
    )
    # session -> [project, first µs, last µs, sums, {model: sums}, {subagent: [type, sums]}]
    found: dict[str | None, list[Any]] = {}
    for sid, model, sub, kind, project, first, last, *values in reader.fetch(sql, params):
        entry = found.get(sid)
        if entry is None:
            entry = found[sid] = [project, first, last, [None] * len(values), {}, {}]
        entry[0] = entry[0] or project
        if first is not None and (entry[1] is None or first < entry[1]):
            entry[1] = first
        if last is not None and (entry[2] is None or last > entry[2]):
            entry[2] = last
        add_sums(entry[3], values)
        add_sums(entry[4].setdefault(model, [None] * len(values)), values)
        agent = entry[5].setdefault(sub, [None, [None] * len(values)])
        agent[0] = agent[0] or kind
        add_sums(agent[1], values)
    rows = [
        ReportRow(
            sid,
            totals=sums_to_totals(sums),
            breakdown={model: sums_to_totals(part) for model, part in models.items()},
            session_id=sid,
            project=project,
            first_at=micros_to_datetime(first),
            last_at=micros_to_datetime(last),
            agents={(sub, kind): sums_to_totals(part) for sub, (kind, part) in agents.items()},
        )
        for sid, (project, first, last, sums, models, agents) in found.items()
    ]
    never = datetime.min.replace(tzinfo=UTC)
    return sorted(rows, key=lambda x: (x.last_at or never, x.session_id or ""))
