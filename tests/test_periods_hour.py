"""The hourly roll-up (``call_rollup_hour``, migration 0011): it stays the 15-minute roll-up
summed per hour through every write, and period reports that read it give the numbers the
calls give, in zones with DST (one changing at midnight), off the hour grid, and over random
ranges that cut through hours and quarter hours."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from llmledger.reports.filters import Filters
from llmledger.reports.periods import period_report
from llmledger.store import Repository, open_repository, rollup
from llmledger.store.rollup import MEASURE_COLUMNS
from llmledger.store.schema import calls
from test_periods import _call, _expected, _readers, _reported

_MEASURES = ", ".join(MEASURE_COLUMNS)


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repo = open_repository(db_url)
    rng = random.Random(20261203)
    rows = [_call(rng, i) for i in range(500)]
    for i, row in enumerate(rows[:40]):  # around Santiago's change at local midnight
        row["started_at"] = datetime(2026, 4, 5, 2, 0, tzinfo=UTC) + timedelta(minutes=7 * i)
    with repo.engine.begin() as conn:
        conn.execute(calls.insert(), rows)
        conn.execute(sa.text("UPDATE calls SET output_tokens = 3 WHERE id % 7 = 0"))
        conn.execute(
            sa.text("UPDATE calls SET started_at = started_at + 2700000000 WHERE id % 5 = 0")
        )
        conn.execute(sa.text("DELETE FROM calls WHERE id % 17 = 0"))
    yield repo
    repo.engine.dispose()


def _hours_from_quarters(conn: sa.Connection) -> dict[tuple[Any, ...], list[int]]:
    """The 15-minute roll-up summed per hour in Python, rows of all zeros left out."""
    out: dict[tuple[Any, ...], list[int]] = {}
    for bucket, source, model, *values in conn.execute(
        sa.text(f"SELECT bucket, source, model, {_MEASURES} FROM call_rollup")
    ):
        key = (-1 if bucket < 0 else bucket // 4, source, model)
        slot = out.setdefault(key, [0] * len(values))
        for i, value in enumerate(values):
            slot[i] += int(value)
    return {k: v for k, v in out.items() if any(v)}


def _hours(conn: sa.Connection) -> dict[tuple[Any, ...], list[int]]:
    found = conn.execute(sa.text(f"SELECT hour, source, model, {_MEASURES} FROM call_rollup_hour"))
    return {
        (hour, source, model): [int(v) for v in values]
        for hour, source, model, *values in found
        if any(values)
    }


def test_the_hour_rollup_follows_every_write(repo: Repository) -> None:
    with repo.engine.connect() as conn:
        expected = _hours_from_quarters(conn)
        assert len(expected) > 100
        assert _hours(conn) == expected
    with repo.engine.begin() as conn:  # a bulk load's way: the roll-up computed again
        rollup.drop_triggers(conn)
        conn.execute(sa.text("DELETE FROM calls WHERE id % 3 = 0"))
        rollup.rebuild(conn)
        rollup.create_triggers(conn)
    with repo.engine.connect() as conn:
        assert _hours(conn) == _hours_from_quarters(conn) != expected


_ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("America/New_York"),
    ZoneInfo("America/Santiago"),  # DST ends at local midnight on 2026-04-05
    ZoneInfo("Asia/Kolkata"),  # +05:30: the 15-minute roll-up only
    ZoneInfo("Australia/Lord_Howe"),  # a half-hour change: the 15-minute roll-up only
]


class _Spy:
    """A reader that notes the SQL it is asked."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.dialect = reader.dialect
        self.sql: list[str] = []

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.sql.append(sql)
        result: list[tuple[Any, ...]] = self.reader.fetch(sql, params)
        return result


def _random_range(rng: random.Random) -> Filters:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    since = start + timedelta(seconds=rng.uniform(0, 45 * 86_400))
    until = since + timedelta(seconds=rng.uniform(0, 20 * 86_400))
    if rng.random() < 0.3:  # on an hour or a quarter hour
        since = since.replace(minute=rng.choice([0, 15]), second=0, microsecond=0)
    return Filters(
        since=None if rng.random() < 0.15 else since,
        until=None if rng.random() < 0.15 else until,
    )


@pytest.mark.parametrize("tz", _ZONES, ids=str)
def test_random_ranges_equal_the_calls(repo: Repository, tz: tzinfo) -> None:
    rng = random.Random(str(tz))
    hour_grid = tz in (UTC, ZoneInfo("America/New_York"), ZoneInfo("America/Santiago"))
    for _ in range(6):
        filters = _random_range(rng)
        expected = _expected(repo, tz, "auto", filters)
        for reader in _readers(repo):
            spy = _Spy(reader)
            assert _reported(period_report(spy, "daily", tz=tz, filters=filters)) == expected
            read_hours = any("FROM call_rollup_hour" in sql for sql in spy.sql)
            wide = filters.since is None or filters.until is None
            if hour_grid and (wide or filters.until - filters.since > timedelta(hours=2)):
                assert read_hours
            elif not hour_grid:
                assert not read_hours
