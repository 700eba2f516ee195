"""The group-by report (``llmledger tokens``): calls, tokens, duration and cost per
combination of dimension values (project, agent, command, day, model, job, action, provider,
host, branch, cwd, subagent, subagent_type).

One SQL query over indexed ``calls`` columns (joined to ``runs`` for a run's command, action and
key), through SQLAlchemy; a ``day`` dimension is the local day in ``tz``, exact per segment of
constant UTC offset as in :mod:`llmledger.reports.periods`. Sums keep None for a bucket no call
reported (None is not 0); a cost is the sum of the known costs plus the count of unpriced calls,
never hidden. Cost modes: :mod:`llmledger.reports.filters`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    case,
    func,
    literal_column,
    select,
    type_coerce,
)

from llmledger.reports.filters import COST_MODES, Filters
from llmledger.reports.periods import local_day_sql, offset_segments
from llmledger.reports.sums import sums_to_totals
from llmledger.store.engine import READ_ONLY
from llmledger.store.repository import Repository
from llmledger.store.rollup import SUMMED, cost_expressions
from llmledger.store.schema import calls, runs
from llmledger.totals import Totals

__all__ = ["DIMENSIONS", "GroupRow", "group_tokens", "total_of"]

#: Dimensions of :func:`group_tokens`.
DIMENSIONS: tuple[str, ...] = (
    "project",
    "agent",
    "command",
    "day",
    "model",
    "job",
    "action",
    "provider",
    "host",
    "branch",
    "cwd",
    "subagent",
    "subagent_type",
)

_EPOCH_DATE = date(1970, 1, 1)
_MICROS = type_coerce(calls.c.started_at, BigInteger)


def _clauses(filters: Filters) -> list[ColumnElement[bool]]:
    """The WHERE clauses on ``calls`` for ``filters``."""
    out: list[ColumnElement[bool]] = []
    if filters.since is not None:
        out.append(calls.c.started_at >= filters.since)
    if filters.until is not None:
        out.append(calls.c.started_at <= filters.until)
    for column, values in (
        (calls.c.source, filters.sources),
        (calls.c.project, filters.projects),
        (calls.c.model, filters.models),
        (calls.c.agent_id, filters.agents),
        (calls.c.host, filters.hosts),
        (calls.c.branch, filters.branches),
    ):
        if values:
            out.append(column.in_(values))
    return out


def _sums(mode: str, dialect: str) -> list[ColumnElement[Any]]:
    if mode not in COST_MODES:
        raise ValueError(f"unknown cost mode {mode!r}: one of {', '.join(COST_MODES)}")
    cost: ColumnElement[Any] = literal_column(cost_expressions("calls", dialect)[mode])
    return [
        *(func.sum(calls.c[name]).label(name) for name in SUMMED),
        func.sum(cost).label("cost_pico"),
        func.sum(case((cost.is_(None), 1), else_=0)).label("unpriced_calls"),
        func.count().label("calls"),
    ]


_SUM_LABELS = (*SUMMED, "cost_pico", "unpriced_calls", "calls")


def _totals(row: Any) -> Totals:
    return sums_to_totals([row[name] for name in _SUM_LABELS])


def total_of(rows: Iterable[Totals]) -> Totals:
    """The sum of totals (None buckets stay None when no part reported them)."""
    return Totals.total(rows)


def _run(repo: Repository, query: Select[Any]) -> list[Any]:
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return list(conn.execute(query).mappings())


# -- period reports ----------------------------------------------------------------------------


def _local_day(repo: Repository, tz: tzinfo) -> ColumnElement[Any]:
    """SQL for the call's local date in ``tz``, as days since 1970-01-01."""
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        first, last = conn.execute(select(func.min(_MICROS), func.max(_MICROS))).one()
    segments = [(None, 0)] if first is None else offset_segments(tz, int(first), int(last))
    return literal_column(local_day_sql(segments, "calls.started_at")).label("day")


# -- tokens by dimension -----------------------------------------------------------------------


@dataclass(slots=True)
class GroupRow:
    """Totals of one combination of dimension values, with the summed call duration."""

    key: dict[str, str | None]
    totals: Totals = field(default_factory=Totals)
    duration_ms: int | None = None


def _dimension(repo: Repository, name: str, tz: tzinfo) -> ColumnElement[Any]:
    if name == "day":
        return _local_day(repo, tz)
    columns: dict[str, ColumnElement[Any]] = {
        "project": calls.c.project,
        "agent": calls.c.agent_id,
        "model": calls.c.model,
        "provider": calls.c.provider,
        "host": calls.c.host,
        "branch": calls.c.branch,
        "cwd": calls.c.cwd,
        "subagent": calls.c.subagent,
        "subagent_type": calls.c.subagent_type,
        "command": runs.c.command_name,
        "action": runs.c.action,
        "job": runs.c.key,
    }
    if name not in columns:
        raise ValueError(f"unknown dimension {name!r}: use any of {', '.join(DIMENSIONS)}")
    return columns[name]


def group_tokens(
    repo: Repository,
    dimensions: Sequence[str],
    *,
    tz: tzinfo = UTC,
    filters: Filters = Filters(),
    cost: str = "auto",
) -> list[GroupRow]:
    """Calls, tokens, duration and cost grouped by ``dimensions`` (names from
    :data:`DIMENSIONS`; ``command``, ``action`` and ``job`` are the call's run's command name,
    action and external key; ``host`` the machine the call came from; ``branch`` and ``cwd``
    the git branch and working directory its log recorded; ``subagent`` and ``subagent_type``
    the Claude Code subagent that made it — each None when not known, a subagent None for the
    main thread); largest cost first."""
    if not dimensions:
        raise ValueError(f"name at least one dimension: {', '.join(DIMENSIONS)}")
    cols = [_dimension(repo, d, tz).label(f"d_{i}") for i, d in enumerate(dimensions)]
    query = select(
        *cols, func.sum(calls.c.duration_ms).label("duration_ms"), *_sums(cost, repo.dialect)
    )
    if any(d in ("command", "action", "job") for d in dimensions):
        query = query.select_from(calls.outerjoin(runs, runs.c.id == calls.c.run_id))
    query = query.where(and_(True, *_clauses(filters))).group_by(*cols)
    merged: dict[tuple[str | None, ...], GroupRow] = {}
    for r in _run(repo, query):
        values: list[str | None] = []
        for i, name in enumerate(dimensions):
            value = r[f"d_{i}"]
            if name == "day" and value is not None:
                value = (_EPOCH_DATE + timedelta(days=int(value))).isoformat()
            values.append(value)
        key = tuple(values)
        row = merged.get(key)
        if row is None:
            row = merged[key] = GroupRow(dict(zip(dimensions, values, strict=True)))
        row.totals = row.totals + _totals(r)
        if r["duration_ms"] is not None:
            row.duration_ms = (row.duration_ms or 0) + int(r["duration_ms"])
    return sorted(
        merged.values(),
        key=lambda g: (-(g.totals.cost_usd or Decimal(0)), tuple(str(v) for v in g.key.values())),
    )
