"""Aggregations every surface uses: period reports, sessions, 5-hour blocks, token group-by.

Period reports live in :mod:`llmledger.periods` (they read the call roll-up) and are
re-exported here. The others are one SQL query each over indexed ``calls`` columns; a ``day``
dimension is the local day in ``tz``, exact per segment of constant UTC offset as in periods.
Sums keep None for a bucket no call reported (None is not 0); a cost is the sum of the known
costs plus the count of unpriced calls, never hidden.

Cost modes (as ccusage's): ``auto`` is the stored cost (the log's own where it had one, else
computed when imported); ``calculate`` recomputes a logged cost from tokens (the importer keeps
that figure as ``metadata.computed_cost_pico``); ``reported`` counts only logged costs, every
other call unpriced.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
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

from llmledger.periods import (
    COST_MODES,
    PERIODS,
    CostMode,
    Filters,
    ReportRow,
    add_sums,
    local_day_sql,
    offset_segments,
    period_report,
    sums_to_totals,
)
from llmledger.sessions import sessions_report
from llmledger.store.engine import READ_ONLY
from llmledger.store.repository import Repository
from llmledger.store.rollup import SUMMED, cost_expressions
from llmledger.store.schema import calls, runs
from llmledger.store.types import micros_to_datetime
from llmledger.totals import Totals

__all__ = [
    "COST_MODES",
    "DIMENSIONS",
    "PERIODS",
    "Block",
    "CostMode",
    "Filters",
    "GroupRow",
    "ReportRow",
    "blocks",
    "group_tokens",
    "period_report",
    "sessions_report",
    "total_of",
]

#: Dimensions of :func:`group_tokens`.
DIMENSIONS: tuple[str, ...] = (
    "project", "agent", "command", "day", "model", "job", "action", "provider",
)  # fmt: skip

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


# -- 5-hour blocks -----------------------------------------------------------------------------


@dataclass(slots=True)
class Block:
    """A 5-hour billing window as ccusage defines it (or a gap between two)."""

    start: datetime
    end: datetime
    first_at: datetime | None = None
    last_at: datetime | None = None
    totals: Totals = field(default_factory=Totals)
    models: list[str] = field(default_factory=list)
    entries: int = 0
    is_gap: bool = False
    is_active: bool = False

    def burn_rate(self) -> dict[str, float] | None:
        """Tokens per minute and USD per hour between the first and last call (active only)."""
        if not self.is_active or self.first_at is None or self.last_at is None:
            return None
        minutes = (self.last_at - self.first_at).total_seconds() / 60
        if minutes <= 0:
            return None
        usage = self.totals.usage
        total = usage.total_tokens or 0
        io = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        cost = float(self.totals.cost_usd or 0)
        return {
            "tokens_per_minute": total / minutes,
            "tokens_per_minute_indicator": io / minutes,
            "cost_per_hour": cost / minutes * 60,
        }

    def projection(self, now: datetime) -> dict[str, float] | None:
        """Totals projected to the block's end at the current burn rate (active only)."""
        rate = self.burn_rate()
        if rate is None:
            return None
        remaining = max(0.0, (self.end - now).total_seconds() / 60)
        return {
            "total_tokens": (self.totals.usage.total_tokens or 0)
            + rate["tokens_per_minute"] * remaining,
            "cost_usd": float(self.totals.cost_usd or 0) + rate["cost_per_hour"] / 60 * remaining,
            "remaining_minutes": remaining,
        }


def blocks(
    repo: Repository,
    *,
    filters: Filters = Filters(),
    cost: str = "auto",
    hours: float = 5,
    now: datetime | None = None,
) -> list[Block]:
    """Calls grouped into ``hours``-long blocks (ccusage ``blocks``): a block starts at its first
    call's time floored to the hour; a call more than ``hours`` after the block's start or after
    the previous call starts a new one; a gap block marks a long idle stretch."""
    length = timedelta(hours=hours)
    now = now or datetime.now(UTC)
    span, hour = int(hours * 3_600_000_000), 3_600_000_000
    query = (
        select(_MICROS.label("at"), calls.c.model, *_sums(cost, repo.dialect))
        .where(and_(calls.c.started_at.is_not(None), *_clauses(filters)))
        .group_by(_MICROS, calls.c.model)
        .order_by(_MICROS)
    )
    # Blocks are found on integer microseconds and summed as raw SQL sums; objects are made
    # once per block (a year of calls is a few hundred blocks but ~10^5 rows).
    found: list[tuple[int, int, int, list[Any], list[str]]] = []  # start, first, last, ...
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        for at, model, *values in conn.execute(query):
            block = found[-1] if found else None
            if block is None or at - block[0] > span or at - block[2] > span:
                block = (at - at % hour, at, at, list(values), [])
                found.append(block)
            else:
                found[-1] = block = (block[0], block[1], at, block[3], block[4])
                add_sums(block[3], values)
            if model and model != "<synthetic>" and model not in block[4]:
                block[4].append(model)
    out: list[Block] = []
    for start, first, last, sums, models in found:
        begin = micros_to_datetime(start)
        assert begin is not None
        previous = out[-1].last_at if out else None
        if previous is not None and begin > previous + length:
            out.append(Block(previous + length, begin, is_gap=True))
        totals = sums_to_totals(sums)
        out.append(Block(begin, begin + length, first_at=micros_to_datetime(first),
                         last_at=micros_to_datetime(last), totals=totals, models=models,
                         entries=totals.calls))  # fmt: skip
    current = out[-1] if out else None
    if current is not None and current.last_at is not None:
        current.is_active = now - current.last_at < length and now < current.end
    return out


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
    action and external key); largest cost first."""
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
