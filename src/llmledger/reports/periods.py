"""Daily, weekly and monthly reports: totals per local period and model.

A period report groups by (local day, model) in SQL. The local day of a time ``t`` is
``(t + offset) // day``, where the zone's UTC offset is taken per segment of constant offset
between the ledger's first and last call (a CASE over the DST changes), so any zone is exact on
both engines. The sums come from the call roll-up (``store/rollup.py``: totals per 15-minute
bucket, and ``store/hour_rollup.py``: the same per hour, four times fewer rows, read wherever
the local days are unions of whole hours) wherever it answers exactly — every bucket wholly
inside the selected range, in a zone whose offsets and changes fall on quarter hours — and
from ``calls`` for the rest: the partial
buckets at the ends of a ``--since``/``--until`` range, reports filtered by project or agent,
and the rare zone off the quarter-hour grid. With ``by_project`` (``daily --by-project``, as
ccusage's ``--instances``) the rows are per period and project, from ``calls``. Sums keep
None for a bucket no call reported (None is not 0); a cost is the sum of the known costs plus
the count of unpriced calls, never hidden.

This module reads through the small :class:`~llmledger.store.sqlite_reader.Reader` protocol
(SQL text with ``?`` placeholders) and does not import SQLAlchemy, so that a report on a
current SQLite ledger starts quickly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from llmledger.reports.filters import COST_MODES, Filters, calls_where, in_values
from llmledger.reports.sums import ReportRow, add_sums, calls_sums, sums_to_totals
from llmledger.store.hour_rollup import HOUR_BUCKETS
from llmledger.store.rollup import BUCKET_MICROS, COST_COLUMNS, NO_TIME, SUMMED
from llmledger.store.sqlite_reader import Reader
from llmledger.values import datetime_to_micros

__all__ = ["PERIODS", "local_day_sql", "offset_segments", "period_report"]

PERIODS: tuple[str, ...] = ("daily", "weekly", "monthly")

_DAY_MICROS = 86_400 * 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_HOUR_MICROS = HOUR_BUCKETS * BUCKET_MICROS
#: The roll-up tables: (name, time key column, its width in µs).
_QUARTERS = ("call_rollup", "bucket", BUCKET_MICROS)
_HOURS = ("call_rollup_hour", "hour", _HOUR_MICROS)


def offset_segments(tz: tzinfo, first: int, last: int) -> list[tuple[int | None, int]]:
    """``tz``'s UTC offset (µs) over [first, last] (epoch µs) as segments ``(until, offset)``;
    the last segment's ``until`` is None, each ``until`` the first microsecond of the next
    offset. Offsets change only at DST or zone-rule changes, so a year of data has a handful of
    segments."""

    def offset_at(micros: int) -> int:
        moment = _EPOCH + timedelta(microseconds=micros)
        delta = moment.astimezone(tz).utcoffset()
        return 0 if delta is None else delta // timedelta(microseconds=1)

    segments: list[tuple[int | None, int]] = []
    current, at = offset_at(first), first
    while at < last:
        step = min(at + _DAY_MICROS, last)
        if offset_at(step) != current:
            # The change lies in (lo, hi]: find its microsecond, so that a change on the
            # hour is a segment boundary on the hour (and the roll-ups can answer).
            lo, hi = at, step
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset_at(mid) == current else (lo, mid)
            segments.append((hi, current))
            current = offset_at(hi)
        at = step
    segments.append((None, current))
    return segments


def local_day_sql(segments: Sequence[tuple[int | None, int]], at: str) -> str:
    """SQL for the local day (days since 1970-01-01) of ``at``, an SQL expression in epoch
    microseconds, under the offsets ``segments`` (:func:`offset_segments`); NULL stays NULL."""
    return f"({at} + {_offset_sql(segments, at)}) / {_DAY_MICROS}"


def _offset_sql(segments: Sequence[tuple[int | None, int]], at: str) -> str:
    """SQL for the offset at time ``at`` (an SQL expression in epoch µs)."""
    if len(segments) == 1:
        return str(segments[0][1])
    whens = " ".join(f"WHEN {at} < {until} THEN {off}" for until, off in segments[:-1])
    return f"CASE {whens} ELSE {segments[-1][1]} END"


def _from_rollup(
    reader: Reader,
    segments: Sequence[tuple[int | None, int]],
    filters: Filters,
    cost: str,
    lo: int | None,
    hi: int | None,
) -> list[tuple[Any, ...]]:
    """(day, model, *sums) over the roll-up buckets ``lo <= bucket < hi``: the whole hours
    from ``call_rollup_hour`` when the local days are unions of hours, the quarter hours at the
    ends (and every bucket in other zones) from ``call_rollup``."""
    if not _on_grid(segments, _HOUR_MICROS):
        return _rollup_rows(reader, _QUARTERS, segments, filters, cost, lo, hi)
    first = None if lo is None else -(-lo // HOUR_BUCKETS)
    last = None if hi is None else hi // HOUR_BUCKETS
    if first is not None and last is not None and first >= last:
        return _rollup_rows(reader, _QUARTERS, segments, filters, cost, lo, hi)
    rows = _rollup_rows(reader, _HOURS, segments, filters, cost, first, last)
    if lo is not None and first is not None and lo < first * HOUR_BUCKETS:
        rows += _rollup_rows(reader, _QUARTERS, segments, filters, cost, lo, first * HOUR_BUCKETS)
    if hi is not None and last is not None and last * HOUR_BUCKETS < hi:
        rows += _rollup_rows(reader, _QUARTERS, segments, filters, cost, last * HOUR_BUCKETS, hi)
    return rows


def _rollup_rows(
    reader: Reader,
    table: tuple[str, str, int],
    segments: Sequence[tuple[int | None, int]],
    filters: Filters,
    cost: str,
    lo: int | None,
    hi: int | None,
) -> list[tuple[Any, ...]]:
    """(day, model, *sums) over the rows ``lo <= key < hi`` of a roll-up ``table``: (name,
    time key column, its width in µs); a key below 0 (no time, or before 1970) has no day."""
    name, key, width = table
    day = f"CASE WHEN {key} < 0 THEN NULL ELSE {local_day_sql(segments, f'{key} * {width}')} END"
    total, priced = COST_COLUMNS[cost]
    sums = [f"CASE WHEN SUM({n}_known) > 0 THEN SUM({n}) END" for n in SUMMED]
    sums += [
        f"CASE WHEN SUM({priced}) > 0 THEN SUM({total}) END",
        f"SUM(calls) - SUM({priced})",
        "SUM(calls)",
    ]
    where: list[str] = []
    params: list[Any] = []
    if lo is not None or hi is not None:
        where.append(f"{key} >= ?")
        params.append(max(lo or 0, 0))
    if hi is not None:
        where.append(f"{key} < ?")
        params.append(hi)
    in_values("source", filters.sources, where, params)
    in_values("model", filters.models, where, params)
    sql = (
        f"SELECT {day} AS day, NULLIF(model, '') AS model_name, {', '.join(sums)} "
        f"FROM {name} {'WHERE ' + ' AND '.join(where) if where else ''} "
        "GROUP BY day, model_name HAVING SUM(calls) > 0"
    )
    return reader.fetch(sql, params)


def _from_calls(
    reader: Reader,
    segments: Sequence[tuple[int | None, int]],
    filters: Filters,
    cost: str,
    lo: int | None,
    hi: int | None,
    by_project: bool = False,
) -> list[tuple[Any, ...]]:
    """(day, model, *sums) over the calls with ``lo <= started_at <= hi``; (day, project,
    model, *sums) ``by_project``."""
    day = local_day_sql(segments, "started_at")
    where, params = calls_where(filters, lo, hi)
    group = "day, project, model" if by_project else "day, model"
    sql = (
        f"SELECT {day} AS day, {group.removeprefix('day, ')}, "
        f"{', '.join(calls_sums(reader, cost))} FROM calls {where} GROUP BY {group}"
    )
    return reader.fetch(sql, params)


def _on_grid(segments: Sequence[tuple[int | None, int]], width: int = BUCKET_MICROS) -> bool:
    """Whether every offset and every change of offset falls on a multiple of ``width`` µs
    (a roll-up bucket's, by default)."""
    return all(
        off % width == 0 and (until is None or until % width == 0) for until, off in segments
    )


def _day_totals(
    reader: Reader,
    *,
    tz: tzinfo = UTC,
    filters: Filters = Filters(),
    cost: str = "auto",
    by_project: bool = False,
) -> list[tuple[Any, ...]]:
    """(local day number or None, model, *sums) rows, several per (day, model) possibly;
    the sums are the input, cache read, cache write, output and reasoning tokens, the cost in
    pico-dollars, the unpriced calls and the calls. ``by_project``: (day, project, model,
    *sums), one per (day, project, model)."""
    if cost not in COST_MODES:
        raise ValueError(f"unknown cost mode {cost!r}: one of {', '.join(COST_MODES)}")
    [(first, last)] = reader.fetch(
        f"SELECT MIN(bucket), MAX(bucket) FROM call_rollup WHERE bucket > {NO_TIME}"
    )
    if first is None:
        segments: list[tuple[int | None, int]] = [(None, 0)]
    else:
        segments = offset_segments(tz, first * BUCKET_MICROS, (last + 1) * BUCKET_MICROS - 1)
    since = None if filters.since is None else datetime_to_micros(filters.since)
    until = None if filters.until is None else datetime_to_micros(filters.until)
    if by_project:  # the roll-up has no project
        return _from_calls(reader, segments, filters, cost, since, until, by_project=True)
    # The roll-up sums by source and model only: other filters read the calls.
    if filters.projects or filters.agents or filters.hosts or filters.branches:
        return _from_calls(reader, segments, filters, cost, since, until)
    if not _on_grid(segments):
        return _from_calls(reader, segments, filters, cost, since, until)
    # Whole buckets inside [since, until] come from the roll-up, the partial ones at the ends
    # from the calls themselves.
    lo = None if since is None else -(-since // BUCKET_MICROS)
    hi = None if until is None else (until + 1) // BUCKET_MICROS
    if lo is not None and hi is not None and lo >= hi:
        return _from_calls(reader, segments, filters, cost, since, until)
    rows = _from_rollup(reader, segments, filters, cost, lo, hi)
    if since is not None and lo is not None and since < lo * BUCKET_MICROS:
        rows += _from_calls(reader, segments, filters, cost, since, lo * BUCKET_MICROS - 1)
    if until is not None and hi is not None and hi * BUCKET_MICROS <= until:
        rows += _from_calls(reader, segments, filters, cost, hi * BUCKET_MICROS, until)
    return rows


def _period_of(kind: str) -> Callable[[date], str]:
    if kind == "daily":
        return date.isoformat
    if kind == "weekly":  # weeks start on Monday, as ccusage's unified weekly report
        return lambda d: (d - timedelta(days=d.weekday())).isoformat()
    if kind == "monthly":
        return lambda d: f"{d.year:04d}-{d.month:02d}"
    raise ValueError(f"unknown period {kind!r}: one of {', '.join(PERIODS)}")


def period_report(
    reader: Reader,
    kind: str,
    *,
    tz: tzinfo = UTC,
    filters: Filters = Filters(),
    cost: str = "auto",
    by_project: bool = False,
) -> list[ReportRow]:
    """Daily, weekly or monthly totals with a per-model breakdown, oldest first; dates are in
    ``tz``. Calls without a timestamp form a last row whose period is None. ``by_project``:
    a row per project within each period (``ReportRow.project``; None for calls without
    one), by project name; a period's rows add up to its total.

    ``reader`` is a :class:`~llmledger.store.Repository` or a
    :class:`~llmledger.store.sqlite_reader.SqliteReader`."""
    period_of = _period_of(kind)
    acc: dict[tuple[str | None, str | None, str | None], list[Any]] = {}
    found = _day_totals(reader, tz=tz, filters=filters, cost=cost, by_project=by_project)
    for number, project, model, *values in (_with_project(r, by_project) for r in found):
        local = None if number is None else _EPOCH_DATE + timedelta(days=int(number))
        key = (None if local is None else period_of(local), project, model)
        slot = acc.get(key)
        if slot is None:
            acc[key] = list(values)
        else:
            add_sums(slot, values)
    rows: dict[tuple[str | None, str | None], ReportRow] = {}
    for (period, project, model), values in acc.items():
        row = rows.get((period, project))
        if row is None:
            row = rows[period, project] = ReportRow(period, project=project)
        row.add(model, sums_to_totals(values))
    return sorted(rows.values(), key=lambda x: (x.period is None, x.period or "", x.project or ""))


def _with_project(row: tuple[Any, ...], by_project: bool) -> tuple[Any, ...]:
    """(day, project, model, *sums): a row of :func:`_day_totals`, its project None unless
    ``by_project``."""
    return row if by_project else (row[0], None, *row[1:])
