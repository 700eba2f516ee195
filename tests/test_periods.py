"""Period reports read the call roll-up: after inserts, updates and deletes, in zones with DST,
half- and quarter-hour offsets and off the quarter-hour grid, in every cost mode and with
ranges that cut through buckets, they equal totals worked out in Python from the calls."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from llmledger.reports.filters import Filters
from llmledger.reports.periods import period_report
from llmledger.store import Repository, open_repository
from llmledger.store.schema import calls
from llmledger.store.sqlite_reader import SqliteReader, open_reader
from llmledger.values import micros_to_datetime

_TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
_START = datetime(2026, 3, 1, tzinfo=UTC)
_ZONES: list[tzinfo] = [
    UTC,
    ZoneInfo("America/New_York"),  # DST begins 2026-03-08
    ZoneInfo("Asia/Kolkata"),  # +05:30
    ZoneInfo("Asia/Kathmandu"),  # +05:45
    ZoneInfo("Australia/Lord_Howe"),  # a half-hour DST change on 2026-04-05
    timezone(timedelta(minutes=7)),  # off the quarter-hour grid: read from calls
]


def _tokens(rng: random.Random) -> dict[str, int | None]:
    out = {n: None if rng.random() < 0.2 else rng.randint(0, 5000) for n in _TOKENS}
    output = out["output_tokens"]
    # Reasoning is a part of output; a call may report it without output (sums over such
    # calls can hold more reasoning than output, and reports must not refuse them).
    out["reasoning_tokens"] = rng.choice([None, (5000 if output is None else output) // 3])
    return out


def _call(rng: random.Random, index: int) -> dict[str, Any]:
    status = rng.choice(["computed", "computed", "reported", "unpriced"])
    cost = None if status == "unpriced" else Decimal(rng.randint(0, 10**7)).scaleb(-9)
    meta: dict[str, Any] | None = None
    if status == "reported" and rng.random() < 0.7:
        meta = {"computed_cost_pico": rng.randint(0, 10**10)}
    return {
        "dedupe_key": f"k{index}",
        "source": rng.choice(["claude_code_transcript", "openai_chat_completions"]),
        "model": rng.choice([None, "m1", "m2", "m3"]),
        "project": rng.choice([None, "alpha", "beta"]),
        "agent_id": rng.choice([None, "claude-code", "codex"]),
        "started_at": None
        if rng.random() < 0.04
        else _START + timedelta(seconds=rng.uniform(0, 45 * 86_400)),
        **_tokens(rng),
        "cost_usd": cost,
        "cost_status": status,
        "status": "ok",
        "token_provenance": "reported",
        "metadata": meta,
        "recorded_at": _START,
    }


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repo = open_repository(db_url)
    rng = random.Random(20261130)
    rows = [_call(rng, i) for i in range(600)]
    for row in rows[:12]:  # a crowded quarter hour, for ranges inside one bucket
        row["started_at"] = datetime(2026, 3, 7, 12, rng.randint(0, 14), tzinfo=UTC)
    with repo.engine.begin() as conn:
        conn.execute(calls.insert(), rows)
        # Every kind of change the triggers follow: tokens, cost, model, time, deletes.
        unprice = "cost_usd = NULL, cost_status = 'unpriced'"
        conn.execute(
            sa.text(
                "UPDATE calls SET output_tokens = 7, reasoning_tokens = 2, "
                f"{unprice} WHERE id % 9 = 0"
            )
        )
        conn.execute(
            sa.text(
                "UPDATE calls SET model = 'm9', started_at = started_at + "
                "3600000000 WHERE id % 11 = 0"
            )
        )
        conn.execute(sa.text("DELETE FROM calls WHERE id % 13 = 0"))
    yield repo
    repo.engine.dispose()


def _expected(repo: Repository, tz: tzinfo, cost: str, f: Filters) -> dict[Any, list[Any]]:
    """(day, model) -> [tokens..., cost pico, unpriced, calls], worked out in Python."""
    out: dict[Any, list[Any]] = {}
    with repo.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM calls")).mappings().all()
    for r in rows:
        at = micros_to_datetime(r["started_at"])
        if f.since is not None and (at is None or at < f.since):
            continue
        if f.until is not None and (at is None or at > f.until):
            continue
        if any(
            values and r[column] not in values
            for column, values in (
                ("source", f.sources),
                ("project", f.projects),
                ("model", f.models),
                ("agent_id", f.agents),
            )
        ):
            continue
        meta = r["metadata"]
        if isinstance(meta, str):
            meta = json.loads(meta)
        reported = r["cost_status"] == "reported"
        money = {
            "auto": r["cost_usd"],
            "reported": r["cost_usd"] if reported else None,
            "calculate": ((meta or {}).get("computed_cost_pico") if reported else r["cost_usd"]),
        }[cost]
        key = (None if at is None else at.astimezone(tz).date().isoformat(), r["model"])
        slot = out.setdefault(key, [None] * 5 + [None, 0, 0])
        for i, value in enumerate([*(r[n] for n in _TOKENS), money]):
            if value is not None:
                slot[i] = (slot[i] or 0) + int(value)
        slot[6] += money is None
        slot[7] += 1
    return out


def _reported(rows: list[Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for row in rows:
        for model, t in row.breakdown.items():
            u = t.usage
            pico = None if t.cost_usd is None else int(t.cost_usd.scaleb(12))
            out[(row.period, model)] = [
                *(getattr(u, n) for n in _TOKENS),
                pico,
                t.unpriced_calls,
                t.calls,
            ]
    return out


def _readers(repo: Repository) -> list[Any]:
    reader = open_reader(str(repo.engine.url))
    return [repo] if reader is None else [repo, reader]


@pytest.mark.parametrize("tz", _ZONES, ids=str)
@pytest.mark.parametrize("cost", ["auto", "calculate", "reported"])
def test_daily_from_the_rollup_equals_the_calls(repo: Repository, tz: tzinfo, cost: str) -> None:
    expected = _expected(repo, tz, cost, Filters())
    assert sum(v[7] for v in expected.values()) > 500
    for reader in _readers(repo):
        assert _reported(period_report(reader, "daily", tz=tz, cost=cost)) == expected


_RANGES = [
    Filters(
        since=datetime(2026, 3, 5, 10, 7, 13, 500, tzinfo=UTC),
        until=datetime(2026, 4, 1, 3, 3, 3, tzinfo=UTC),
    ),  # cuts through buckets
    Filters(since=datetime(2026, 3, 9, tzinfo=ZoneInfo("America/New_York"))),
    Filters(until=datetime(2026, 3, 20, 23, 59, 59, 999999, tzinfo=UTC)),
    Filters(
        since=datetime(2026, 3, 7, 12, 1, tzinfo=UTC), until=datetime(2026, 3, 7, 12, 9, tzinfo=UTC)
    ),  # inside one bucket
    Filters(sources=("openai_chat_completions",), models=("m1", "m9")),
    Filters(projects=("alpha",)),
    Filters(agents=("codex",), since=datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("filters", _RANGES)
def test_ranges_and_filters_equal_the_calls(repo: Repository, filters: Filters) -> None:
    for tz in (UTC, ZoneInfo("Asia/Kolkata")):
        expected = _expected(repo, tz, "auto", filters)
        assert expected
        for reader in _readers(repo):
            assert _reported(period_report(reader, "daily", tz=tz, filters=filters)) == expected


def test_monthly_sums_the_days(repo: Repository) -> None:
    tz = ZoneInfo("America/New_York")
    days = _expected(repo, tz, "auto", Filters())
    march = [v for (day, _), v in days.items() if day and day.startswith("2026-03")]
    rows = {r.period: r for r in period_report(repo, "monthly", tz=tz)}
    assert rows["2026-03"].totals.calls == sum(v[7] for v in march)
    assert rows["2026-03"].totals.usage.input_tokens == sum(v[0] or 0 for v in march)
    assert rows[None].totals.calls == sum(v[7] for (day, _), v in days.items() if day is None)


def test_an_empty_ledger_has_no_rows_and_unknown_is_not_zero(db_url: str) -> None:
    repo = open_repository(db_url)
    assert period_report(repo, "daily") == []
    with repo.engine.begin() as conn:
        conn.execute(
            calls.insert(),
            [
                {
                    **_call(random.Random(1), 0),
                    "input_tokens": None,
                    "cost_usd": None,
                    "cost_status": "unpriced",
                }
            ],
        )
    [row] = period_report(repo, "daily")
    assert row.totals.usage.input_tokens is None
    assert row.totals.cost_usd is None
    assert row.totals.unpriced_calls == 1
    repo.engine.dispose()


def test_the_light_reader_needs_a_current_sqlite_file(tmp_path: Any, pg_url: str) -> None:
    path = tmp_path / "ledger.db"
    assert open_reader(f"sqlite:///{path}") is None  # no file: nothing is created
    assert not path.exists()
    open_repository(f"sqlite:///{path}").engine.dispose()
    reader = open_reader(f"sqlite:///{path}")
    assert isinstance(reader, SqliteReader)
    reader.close()
    assert open_reader(pg_url) is None
    garbage = tmp_path / "notes.db"
    garbage.write_text("not a database")
    assert open_reader(f"sqlite:///{garbage}") is None  # the full open reports the error
