"""The reports' ``--host`` filter and ``tokens --group-by host``: calls from several machines in
one ledger, each report's totals for one host or several, on SQLite (the standard-library fast
path) and the real PostgreSQL; whole 15-minute buckets come from the roll-up, which must not
count another host's calls."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from llmledger import Call, Usage, store
from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.reports import Filters, group_tokens, period_report
from llmledger.store import Repository, open_repository

runner = CliRunner()

#: (host, day, hour, input tokens, session): each host's calls on two days; one call with no
#: host. Each call is alone in its 15-minute bucket or shares it with another host's.
_CALLS = [
    ("alpha", 2, 10, 100, "s-alpha"),
    ("alpha", 2, 11, 200, "s-alpha"),
    ("alpha", 9, 10, 400, "s-alpha-2"),
    ("beta", 2, 10, 10, "s-beta"),
    ("beta", 10, 12, 20, "s-beta"),
    (None, 2, 10, 1000, "s-local"),
]


def _input(*hosts: str | None) -> int:
    return sum(tokens for host, _, _, tokens, _ in _CALLS if host in hosts)


@pytest.fixture
def ledger(db_url: str) -> Iterator[str]:
    repo = open_repository(db_url)
    try:
        repo.add_calls(
            Call(
                Usage(input_tokens=tokens, output_tokens=1),
                source="test",
                model="m",
                dedupe_key=f"{host}-{day}-{hour}",
                started_at=datetime(2026, 11, day, hour, 5, tzinfo=UTC),
                session_id=session,
                reported_cost_usd=Decimal(tokens) / 1000,
                host=host,
            )
            for host, day, hour, tokens, session in _CALLS
        )
    finally:
        repo.engine.dispose()
    return db_url


@pytest.fixture(autouse=True)
def _close_cli_ledgers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A report command leaves its ledger to the end of its process; in this one, the test
    # closes it (PostgreSQL connections left to the garbage collector warn).
    opened: list[Repository] = []

    def open_and_keep(url: str | None = None, *, migrate: bool = True) -> Repository:
        repo = open_repository(url, migrate=migrate)
        opened.append(repo)
        return repo

    monkeypatch.setattr(store, "open_repository", open_and_keep)
    yield
    for repo in opened:
        repo.engine.dispose()


def _report(ledger: str, *args: str) -> dict[str, Any]:
    _register_commands([args[0]])
    result = runner.invoke(app, [*args, "--json", "--tz", "UTC", "--no-import", "--db", ledger])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = orjson.loads(result.stdout)
    if "blocks" in document:  # the blocks' sum, as the other reports' totals
        blocks = [b for b in document["blocks"] if not b["is_gap"]]
        document["totals"] = {
            name: sum(b[name] for b in blocks if b[name] is not None) or None
            for name in ("input_tokens", "cost_usd")
        }
        document["totals"]["calls"] = sum(b["calls"] for b in blocks)
    return document


def _hosts(*hosts: str) -> list[str]:
    return [arg for host in hosts for arg in ("--host", host)]


@pytest.mark.parametrize("report", ["daily", "weekly", "monthly", "sessions", "blocks", "tokens"])
@pytest.mark.parametrize("hosts", [("alpha",), ("beta",), ("alpha", "beta"), ("nowhere",)])
def test_each_report_counts_only_the_hosts_asked_for(
    ledger: str, report: str, hosts: tuple[str, ...]
) -> None:
    document = _report(ledger, report, *_hosts(*hosts))
    assert document["totals"]["input_tokens"] == (_input(*hosts) or None)
    assert document["totals"]["calls"] == sum(1 for call in _CALLS if call[0] in hosts)
    assert Decimal(str(document["totals"]["cost_usd"] or 0)) == Decimal(_input(*hosts)) / 1000


@pytest.mark.parametrize("report", ["daily", "sessions", "blocks", "tokens"])
def test_without_host_every_call_counts(ledger: str, report: str) -> None:
    document = _report(ledger, report)
    assert document["totals"]["input_tokens"] == _input("alpha", "beta", None)


def test_host_with_a_time_range_cut_inside_buckets(ledger: str) -> None:
    # since 9:50 and until 11:10 cut the 9:45 and 11:00 buckets: those come from the calls,
    # the whole buckets between (10:00 with three hosts' calls) from the roll-up.
    since, until = "2026-11-02T09:50:00", "2026-11-02T11:10:00"
    alpha = _report(ledger, "daily", "--since", since, "--until", until, "--host", "alpha")
    assert alpha["totals"]["input_tokens"] == 300
    (row,) = alpha["rows"]
    assert row["period"] == "2026-11-02"
    wide = _report(
        ledger, "daily", "--since", "2026-11-01", "--until", "2026-11-30", "--host", "beta"
    )
    assert [(r["period"], r["input_tokens"]) for r in wide["rows"]] == [
        ("2026-11-02", 10),
        ("2026-11-10", 20),
    ]


def test_daily_rows_per_host(ledger: str) -> None:
    rows = _report(ledger, "daily", "--host", "alpha")["rows"]
    assert [(r["period"], r["input_tokens"]) for r in rows] == [
        ("2026-11-02", 300),
        ("2026-11-09", 400),
    ]


def test_sessions_of_a_host(ledger: str) -> None:
    rows = _report(ledger, "sessions", "--host", "alpha")["rows"]
    assert sorted((r["session_id"], r["input_tokens"]) for r in rows) == [
        ("s-alpha", 300),
        ("s-alpha-2", 400),
    ]


def test_tokens_grouped_by_host(ledger: str) -> None:
    document = _report(ledger, "tokens", "--group-by", "host")
    assert document["group_by"] == ["host"]
    by_host = {row["host"]: row["input_tokens"] for row in document["rows"]}
    assert by_host == {"alpha": 700, "beta": 30, None: 1000}
    filtered = _report(ledger, "tokens", "--group-by", "host,model", "--host", "beta")
    assert [(r["host"], r["model"], r["input_tokens"]) for r in filtered["rows"]] == [
        ("beta", "m", 30)
    ]


def test_the_library_filters_by_host(ledger: str) -> None:
    repo: Repository = open_repository(ledger)
    try:
        rows = period_report(repo, "monthly", filters=Filters(hosts=("alpha", "beta")))
        assert [r.totals.usage.input_tokens for r in rows] == [730]
        groups = group_tokens(repo, ["host"], filters=Filters(hosts=("beta",)))
        assert [(g.key, g.totals.calls) for g in groups] == [({"host": "beta"}, 2)]
    finally:
        repo.engine.dispose()


def test_help_names_the_host_option_and_dimension() -> None:
    _register_commands(["tokens"])
    result = runner.invoke(app, ["tokens", "--help"], env={"COLUMNS": "200"})
    assert "--host" in result.stdout
    assert "host" in result.stdout.split("--group-by")[1]
