"""``llmledger runs`` and ``show``: the run tree with own and inclusive usage, as JSON and text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from llmledger import Usage
from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.ledger import Ledger
from llmledger.timespec import parse_instant, parse_tz

_register_commands()
runner = CliRunner()


@pytest.fixture
def plan_url(sqlite_url: str) -> str:
    with Ledger(sqlite_url) as ledger, ledger.run("plan", "Refactor", key="plan-1"):
        with ledger.run("task", "Fix", key="1.1") as task:
            for n in (1, 2):
                try:
                    with task.attempt():
                        ledger.record(Usage(input_tokens=100, output_tokens=10), model="m")
                        if n == 1:
                            raise RuntimeError("first try fails")
                except RuntimeError:
                    pass
        with ledger.run("task", "Docs", key="1.2"):
            ledger.record(Usage(input_tokens=5, cache_read_tokens=0), model="m")
    return sqlite_url


def test_show_json_tree(plan_url: str) -> None:
    result = runner.invoke(app, ["show", "plan-1", "--db", plan_url, "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)["run"]
    assert run["kind"] == "plan"
    assert run["status"] == "succeeded"
    assert run["own"]["calls"] == 0
    assert run["own"]["input_tokens"] is None
    assert run["inclusive"]["input_tokens"] == 205
    assert run["inclusive"]["cache_read_tokens"] == 0
    assert run["inclusive"]["unpriced_calls"] == 3
    assert run["inclusive"]["cost_usd"] is None
    fix, docs = run["children"]
    assert fix["attempts"] == 2
    assert [a["status"] for a in fix["children"]] == ["failed", "succeeded"]
    assert fix["inclusive"]["output_tokens"] == 20
    assert docs["inclusive"]["input_tokens"] == 5
    assert set(run) >= {"id", "name", "key", "attempt", "started_at", "finished_at", "children"}


def test_show_text_and_unknown_run(plan_url: str) -> None:
    result = runner.invoke(app, ["show", "1.1", "--db", plan_url])
    assert result.exit_code == 0, result.output
    assert "task Fix (succeeded, 2 attempts)" in result.output
    missing = runner.invoke(app, ["show", "nope", "--db", plan_url])
    assert missing.exit_code == 2
    assert "llmledger runs" in missing.output


def test_runs_lists_with_filters(plan_url: str) -> None:
    result = runner.invoke(app, ["runs", "--kind", "task", "--db", plan_url, "--json"])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.output)["runs"]
    assert sorted(r["key"] for r in runs) == ["1.1", "1.2"]
    assert {r["key"]: r["inclusive"]["input_tokens"] for r in runs} == {"1.1": 200, "1.2": 5}
    text = runner.invoke(app, ["runs", "--db", plan_url, "--since", "1d"])
    assert text.exit_code == 0
    assert "plan" in text.output
    bad = runner.invoke(app, ["runs", "--db", plan_url, "--since", "yesterday-ish"])
    assert bad.exit_code == 2
    assert "duration" in bad.output


def test_parse_instant() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    utc = parse_tz("UTC")
    assert parse_instant("7d", now=now) == datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    assert parse_instant("90m", now=now) == datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    assert parse_instant("2026-11-01", tz=utc) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_instant("20261101", tz=utc).day == 1
    paris = parse_instant("2026-07-01", tz=parse_tz("Europe/Paris"))
    assert paris.utcoffset() is not None
    assert paris.astimezone(UTC).hour == 22  # midnight in Paris in summer
    with pytest.raises(ValueError, match="IANA"):
        parse_tz("Mars/Olympus")


def test_show_finds_a_run_by_name(plan_url: str) -> None:
    result = runner.invoke(app, ["show", "Refactor", "--db", plan_url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["run"]["key"] == "plan-1"


def test_show_json_prints_a_tree_deeper_than_orjson_nests(sqlite_url: str) -> None:
    """orjson stops at 255 levels (about 120 nested runs); show --json must still print."""
    from llmledger.store import open_repository

    repo = open_repository(sqlite_url)
    parent = repo.create_run("workflow", key="deep")
    for depth in range(150):
        parent = repo.create_run("task", key=f"d{depth}", parent_id=parent)
    repo.engine.dispose()
    result = runner.invoke(app, ["show", "deep", "--db", sqlite_url, "--json"])
    assert result.exit_code == 0, result.output
    node, depth = json.loads(result.output)["run"], 0
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert (depth, node["key"]) == (150, "d149")
