"""Reports over imported logs: equal to ccusage 20.0.24 on the fixture tree, JSON shapes, cost
modes, time zones, and the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from llmledger.cli import _app
from llmledger.imports import import_logs
from llmledger.reports import Filters, group_tokens, period_report, sessions_report
from llmledger.reports.blocks import blocks
from llmledger.reports.documents import report_json
from llmledger.store import Repository, open_repository
from llmledger.store.schema import calls

_TOKEN_FIELDS = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheCreationTokens": "cache_write_tokens",
    "cacheReadTokens": "cache_read_tokens",
    "totalTokens": "total_tokens",
}


def ccusage_outputs(fixtures_dir: Path) -> dict[str, Any]:
    """The JSON documents in ccusage-20.0.24-output.txt, keyed by the command line."""
    text = (fixtures_dir / "claude-home" / "ccusage-20.0.24-output.txt").read_text()
    out: dict[str, Any] = {}
    for match in re.finditer(r"^## \$ (ccusage [^\n]*)\n(.*?)^# rc=", text, re.S | re.M):
        command, body = match.group(1), match.group(2).strip()
        if "--json" in command:
            out[command] = json.loads(body)
    return out


@pytest.fixture
def fixture_repo(sqlite_url: str, fixtures_dir: Path) -> Repository:
    repo = open_repository(sqlite_url)
    import_logs(repo, ["claude"], [fixtures_dir / "claude-home"], workers=1)
    return repo


def _cents(value: float | Decimal | None) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def _compare(ours: dict[str, Any], theirs: dict[str, Any], key: str) -> None:
    rows = {r["period"]: r for r in ours["rows"]}
    assert set(rows) == {r[key] for r in theirs}
    for row in theirs:
        mine = rows[row[key]]
        for their_name, our_name in _TOKEN_FIELDS.items():
            assert mine[our_name] == row[their_name], (row[key], our_name)
        # Both price from LiteLLM-equivalent rates for these models; costs agree to the cent.
        assert _cents(mine["cost_usd"]) == _cents(row["totalCost"])
        assert mine["models"] == sorted(row["modelsUsed"])
        by_model = {b["model"]: b for b in mine["breakdown"]}
        for part in row["modelBreakdowns"]:
            assert by_model[part["modelName"]]["output_tokens"] == part["outputTokens"]
            assert _cents(by_model[part["modelName"]]["cost_usd"]) == _cents(part["cost"])


def test_daily_monthly_sessions_equal_ccusage(fixture_repo: Repository, fixtures_dir: Path) -> None:
    theirs = ccusage_outputs(fixtures_dir)
    daily = report_json(period_report(fixture_repo, "daily", tz=UTC))
    _compare(daily, theirs["ccusage daily --json --offline --timezone UTC"]["daily"], "period")
    monthly = report_json(period_report(fixture_repo, "monthly", tz=UTC))
    _compare(
        monthly, theirs["ccusage monthly --json --offline --timezone UTC"]["monthly"], "period"
    )
    weekly = report_json(period_report(fixture_repo, "weekly", tz=UTC))
    _compare(weekly, theirs["ccusage weekly --json --offline --timezone UTC"]["weekly"], "period")
    sessions = report_json(sessions_report(fixture_repo), sessions=True)
    their_sessions = theirs["ccusage session --json --offline --timezone UTC"]["session"]
    _compare(sessions, their_sessions, "period")
    focused = theirs["ccusage claude session --json --offline --timezone UTC"]["sessions"]
    projects = {r["session_id"]: r["project"] for r in sessions["rows"]}
    assert projects == {s["sessionId"]: s["projectPath"] for s in focused}
    last = {r["session_id"]: r["last_at"] for r in sessions["rows"]}
    assert last == {s["sessionId"]: s["lastActivity"].replace(".000Z", "+00:00") for s in focused}
    their_totals = theirs["ccusage daily --json --offline --timezone UTC"]["totals"]
    for their_name, our_name in _TOKEN_FIELDS.items():
        assert daily["totals"][our_name] == their_totals[their_name]
    assert _cents(daily["totals"]["cost_usd"]) == _cents(their_totals["totalCost"])


def test_cost_modes_match_ccusage_modes(fixture_repo: Repository, fixtures_dir: Path) -> None:
    theirs = ccusage_outputs(fixtures_dir)
    calculate = theirs["ccusage claude daily --json --offline --mode calculate --timezone UTC"]
    display = theirs["ccusage claude daily --json --offline --mode display --timezone UTC"]
    ours = report_json(period_report(fixture_repo, "daily", tz=UTC, cost="calculate"))
    assert [_cents(r["cost_usd"]) for r in ours["rows"]] == [
        _cents(r["totalCost"]) for r in calculate["daily"]
    ]
    assert Decimal(str(ours["rows"][1]["cost_usd"])) == Decimal("0.19467")
    reported = report_json(period_report(fixture_repo, "daily", tz=UTC, cost="reported"))
    # ccusage's display mode shows $0 for calls without a logged cost; ours says "unknown".
    assert [r["cost_usd"] for r in reported["rows"]] == [None, 0.0123]
    assert [r["unpriced_calls"] for r in reported["rows"]] == [3, 3]
    assert [_cents(r["totalCost"]) for r in display["daily"]] == [Decimal("0.00"), Decimal("0.01")]


def test_blocks_match_ccusage(fixture_repo: Repository, fixtures_dir: Path) -> None:
    theirs = ccusage_outputs(fixtures_dir)["ccusage blocks --json --offline --timezone UTC"]
    ours = blocks(fixture_repo, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert [(b.start.isoformat(), b.is_gap) for b in ours] == [
        (b["startTime"].replace(".000Z", "+00:00"), b["isGap"]) for b in theirs["blocks"]
    ]
    for mine, their in zip(ours, theirs["blocks"], strict=True):
        assert (mine.totals.usage.total_tokens or 0) == their["totalTokens"]
        assert mine.entries == their["entries"]
        assert not mine.is_active


def test_json_keeps_unreported_buckets_null(fixture_repo: Repository) -> None:
    doc = report_json(period_report(fixture_repo, "daily", tz=UTC))
    row = doc["rows"][0]
    assert set(row) == {
        "period",
        "input_tokens",
        "output_tokens",
        "cache_write_tokens",
        "cache_read_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "calls",
        "models",
        "breakdown",
    }
    assert row["reasoning_tokens"] is None  # Claude Code does not report it: null, not 0
    assert doc["totals"]["reasoning_tokens"] is None
    assert row["calls"] == 3


def test_reports_sum_calls_that_report_different_buckets(sqlite_url: str) -> None:
    # One call reports reasoning without output, the other output alone: each is a valid
    # call, and their sum holds more reasoning than output. No report may refuse it.
    repo = open_repository(sqlite_url)
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    base = {
        "source": "codex_rollout",
        "model": "gpt-5",
        "session_id": "s1",
        "started_at": at,
        "cost_status": "unpriced",
        "status": "ok",
        "token_provenance": "reported",
        "recorded_at": at,
    }
    with repo.engine.begin() as conn:
        conn.execute(
            calls.insert(),
            [
                {
                    **base,
                    "dedupe_key": "a",
                    "input_tokens": 5,
                    "reasoning_tokens": 900,
                    "output_tokens": None,
                },
                {
                    **base,
                    "dedupe_key": "b",
                    "input_tokens": 5,
                    "reasoning_tokens": None,
                    "output_tokens": 10,
                },
            ],
        )
    totals = [
        period_report(repo, "daily")[0].totals,
        sessions_report(repo)[0].totals,
        blocks(repo, now=at)[0].totals,
        group_tokens(repo, ["model"])[0].totals,
    ]
    for total in totals:
        assert (total.usage.output_tokens, total.usage.reasoning_tokens) == (10, 900)
        assert total.calls == 2
    repo.engine.dispose()


def test_dates_follow_the_time_zone(fixture_repo: Repository) -> None:
    kiritimati = period_report(fixture_repo, "daily", tz=ZoneInfo("Pacific/Kiritimati"))
    # UTC+14: 06-10 09:00Z is 23:00 local, 10:30Z is past midnight, 06-11 14:00Z is 06-12.
    assert [(r.period, r.totals.calls) for r in kiritimati] == [
        ("2025-06-10", 2),
        ("2025-06-11", 1),
        ("2025-06-12", 4),
    ]
    kathmandu = period_report(fixture_repo, "daily", tz=ZoneInfo("Asia/Kathmandu"))  # +05:45
    assert sum(r.totals.calls for r in kathmandu) == 7


def test_filters_and_group_by(fixture_repo: Repository) -> None:
    alpha = Filters(projects=("-home-dev-alpha",))
    rows = period_report(fixture_repo, "daily", filters=alpha)
    assert [r.period for r in rows] == ["2025-06-10"]
    since = Filters(since=datetime(2025, 6, 11, tzinfo=UTC))
    assert sum(r.totals.calls for r in period_report(fixture_repo, "daily", filters=since)) == 4
    groups = group_tokens(fixture_repo, ["project", "day"])
    assert {tuple(g.key.values()) for g in groups} == {
        ("-home-dev-alpha", "2025-06-10"),
        ("-home-dev-beta", "2025-06-11"),
    }
    by_command = group_tokens(fixture_repo, ["command", "agent"])
    assert [g.key for g in by_command] == [{"command": None, "agent": "claude-code"}]


def test_import_and_report_on_both_engines(db_url: str, fixtures_dir: Path) -> None:
    repo = open_repository(db_url)
    try:
        first = import_logs(repo, ["claude"], [fixtures_dir / "claude-home"], workers=1)
        again = import_logs(repo, ["claude"], [fixtures_dir / "claude-home"], workers=1)
        doc = report_json(period_report(repo, "daily", tz=UTC))
        calc = report_json(period_report(repo, "daily", tz=UTC, cost="calculate"))
        names = {r.session_id: r.project for r in sessions_report(repo)}
        spans = [(b.is_gap, b.entries, b.models) for b in blocks(repo, now=datetime.now(UTC))]
    finally:
        repo.engine.dispose()
    assert (first.calls_added, again.calls_added, again.files_skipped_unchanged) == (7, 0, 2)
    # Models in the order each first appears in the block.
    assert spans == [
        (False, 3, ["claude-sonnet-4-20250514", "claude-opus-4-20250514"]),
        (True, 0, []),
        (False, 4, ["claude-opus-4-20250514", "claude-sonnet-4-20250514"]),
    ]
    assert [r["total_tokens"] for r in doc["rows"]] == [51570, 25315]
    assert _cents(doc["totals"]["cost_usd"]) == Decimal("0.42")
    assert Decimal(str(calc["totals"]["cost_usd"])) == Decimal("0.41337")
    assert sorted(names.values()) == ["-home-dev-alpha", "-home-dev-beta"]


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli(fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(fixtures_dir / "claude-home"))
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "no-codex"))
    monkeypatch.setenv("GEMINI_DATA_DIR", str(tmp_path / "no-gemini"))
    monkeypatch.setenv("LLMLEDGER_DB", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("COLUMNS", "160")
    _app._register_commands()
    return CliRunner()


def test_cli_import_then_reports(cli: CliRunner) -> None:
    result = cli.invoke(_app.app, ["import", "claude"])
    assert result.exit_code == 0, result.output
    assert "calls added: 7" in result.output
    assert "malformed JSON: 1" in result.output
    daily = cli.invoke(_app.app, ["daily", "--json", "--tz", "UTC", "--no-import"])
    assert daily.exit_code == 0, daily.output
    assert [r["period"] for r in json.loads(daily.output)["rows"]] == ["2025-06-10", "2025-06-11"]
    table = cli.invoke(_app.app, ["monthly", "--tz", "UTC", "--breakdown"])
    assert "76,885" in table.output
    assert "opus-4" in table.output
    sessions = cli.invoke(_app.app, ["sessions", "--json", "--tz", "UTC"])
    assert json.loads(sessions.output)["rows"][1]["project"] == "-home-dev-beta"
    tokens = cli.invoke(_app.app, ["tokens", "--group-by", "model,provider", "--json"])
    assert {r["provider"] for r in json.loads(tokens.output)["rows"]} == {"anthropic"}
    assert cli.invoke(_app.app, ["blocks", "--json"]).exit_code == 0


def test_a_first_report_reads_the_logs_while_the_ledger_is_created(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The ledger does not exist: the import plans without it, starts its worker processes,
    # and only then creates and migrates the ledger (which takes as long as the imports
    # SQLAlchemy needs), so that the two overlap.
    import llmledger.imports.pipeline as pipeline
    import llmledger.imports.workers as workers
    import llmledger.store as store

    monkeypatch.setattr(workers, "POOL_THRESHOLD_BYTES", 0)
    started: list[str] = []
    start_reading, open_repository = pipeline.start_reading, store.open_repository

    def spy_start(*args: Any, **kwargs: Any) -> Any:
        started.append("reading")
        return start_reading(*args, **kwargs)

    def spy_open(*args: Any, **kwargs: Any) -> Any:
        started.append("ledger")
        return open_repository(*args, **kwargs)

    monkeypatch.setattr(pipeline, "start_reading", spy_start)
    monkeypatch.setattr(store, "open_repository", spy_open)
    assert not (tmp_path / "cli.db").exists()
    result = cli.invoke(_app.app, ["daily", "--json", "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    assert started[:2] == ["reading", "ledger"]
    assert sum(r["calls"] for r in json.loads(result.output)["rows"]) == 7


def test_cli_reports_import_first(cli: CliRunner) -> None:
    result = cli.invoke(_app.app, ["weekly", "--json", "--tz", "UTC"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"][0]["period"] == "2025-06-09"


_PROBE = """
import sys
from llmledger.cli._app import main
try:
    main()
finally:
    sys.stderr.write("\\nmodules: " + " ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.mark.parametrize("report", ["daily", "sessions", "blocks"])
def test_a_report_with_nothing_new_to_import_reads_without_sqlalchemy(
    cli: CliRunner, report: str
) -> None:
    # The repeat report is the common case: it stats the logs, finds nothing new and reads the
    # ledger through the standard library; SQLAlchemy alone takes longer to load than that.
    command = [report, "--json", "--tz", "UTC"]
    first = cli.invoke(_app.app, command)
    assert first.exit_code == 0, first.output
    args = [sys.executable, "-c", _PROBE, *command]
    again = subprocess.run(args, capture_output=True, text=True, check=False, env=os.environ)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.output)
    modules = again.stderr.rsplit("modules: ", 1)[1].split()
    assert "llmledger" in modules
    assert "sqlalchemy" not in modules
    assert "rich" not in modules


def test_a_report_imports_lines_appended_since_the_last_one(
    cli: CliRunner, fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "claude-home"
    shutil.copytree(fixtures_dir / "claude-home" / "projects", home / "projects")
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home))
    before = json.loads(cli.invoke(_app.app, ["daily", "--json", "--tz", "UTC"]).output)
    log = next((home / "projects" / "-home-dev-beta").glob("*.jsonl"))
    line = next(json.loads(x) for x in log.read_text().splitlines() if '"usage"' in x)
    line["message"]["id"] = "msg_appended"
    line["requestId"] = "req_appended"
    with log.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    after = json.loads(cli.invoke(_app.app, ["daily", "--json", "--tz", "UTC"]).output)
    assert after["totals"]["calls"] == before["totals"]["calls"] + 1
    added = line["message"]["usage"]["output_tokens"]
    assert after["totals"]["output_tokens"] == before["totals"]["output_tokens"] + added


def test_an_unreadable_ledger_is_an_error_naming_it(cli: CliRunner, tmp_path: Path) -> None:
    assert cli.invoke(_app.app, ["daily", "--json"]).exit_code == 0
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        conn.execute("DROP TABLE call_rollup")  # a damaged ledger still at the newest revision
    result = cli.invoke(_app.app, ["daily", "--no-import"])
    assert result.exit_code == 2
    assert f"cannot read the ledger at {tmp_path / 'cli.db'}" in result.output


def test_cli_errors_say_what_to_do(cli: CliRunner) -> None:
    bad_tz = cli.invoke(_app.app, ["daily", "--tz", "Mars/Olympus", "--no-import"])
    assert bad_tz.exit_code == 2
    assert "IANA" in bad_tz.output
    bad_dim = cli.invoke(_app.app, ["tokens", "--group-by", "colour", "--no-import"])
    assert bad_dim.exit_code == 2
    assert "project" in bad_dim.output
    bad_cost = cli.invoke(_app.app, ["daily", "--cost", "display", "--no-import"])
    assert bad_cost.exit_code == 2
    assert "calculate" in bad_cost.output


@pytest.mark.parametrize(
    ("zone", "instants", "expected"),
    [
        (  # Paris: CET (+1) until 2026-03-29 01:00 UTC, then CEST (+2) until 10-25 01:00 UTC
            "Europe/Paris",
            [
                "2026-03-28T22:59:00",
                "2026-03-28T23:00:00",
                "2026-10-24T22:30:00",
                "2026-10-25T22:30:00",
                "2026-10-25T23:00:00",
            ],
            {"2026-03-28": 1, "2026-03-29": 1, "2026-10-25": 2, "2026-10-26": 1},
        ),
        (  # Kathmandu is +05:45 all year
            "Asia/Kathmandu",
            ["2026-06-01T18:14:59", "2026-06-01T18:15:00"],
            {"2026-06-01": 1, "2026-06-02": 1},
        ),
    ],
)
def test_local_dates_follow_the_zone_across_dst(
    tmp_path: Path, zone: str, instants: list[str], expected: dict[str, int]
) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from llmledger import Usage
    from llmledger.ledger import Ledger
    from llmledger.reports import period_report

    with Ledger(f"sqlite:///{tmp_path / 'tz.db'}") as ledger:
        for instant in instants:
            moment = datetime.fromisoformat(instant + "+00:00")
            ledger.record(Usage(input_tokens=1), model="m", started_at=moment)
        rows = period_report(ledger.repository, "daily", tz=ZoneInfo(zone))
    assert {row.period: row.totals.calls for row in rows} == expected
