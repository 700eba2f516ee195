"""``llmledger budget``: set, list, rm, status (table and JSON); bad input names the option."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmledger import Ledger, Usage
from llmledger.cli._app import _register_commands, app

runner = CliRunner()


def _budget(*args: str) -> tuple[int, str, str]:
    _register_commands(["budget"])
    result = runner.invoke(app, ["budget", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def test_set_list_status_rm(sqlite_url: str) -> None:
    code, out, err = _budget(
        "set", "daily", "--limit", "25", "--window", "day", "--tz", "Europe/Paris",
        "--scope", "agent=claude", "--action", "block", "--warn", "50,80,100",
        "--notify", "http://127.0.0.1:9/hook", "--db", sqlite_url,
    )  # fmt: skip
    assert code == 0, err
    assert "created budget 'daily'" in out
    with Ledger(sqlite_url) as ledger, ledger.run("task", agent="claude"):
        ledger.record(Usage(input_tokens=1), model="m", cost_usd="5")
        ledger.record(Usage(input_tokens=1), model="not-a-priced-model-xyz")
    code, out, _ = _budget("list", "--json", "--db", sqlite_url)
    assert code == 0
    listed = json.loads(out)["budgets"]
    assert listed == [
        {
            "name": "daily",
            "limit_usd": 25.0,
            "window": "day",
            "tz": "Europe/Paris",
            "scope": {"agent": "claude"},
            "action": "block",
            "thresholds": [50, 80, 100],
            "notify": "http://127.0.0.1:9/hook",
        }
    ]
    code, out, _ = _budget("status", "daily", "--json", "--db", sqlite_url)
    assert code == 0
    status = json.loads(out)["budgets"][0]
    assert status["spent_usd"] == 5.0
    assert status["remaining_usd"] == 20.0
    assert status["unpriced_calls"] == 1  # counted, not $0
    assert status["resets_at"] is not None
    code, out, _ = _budget("status", "--db", sqlite_url)
    assert code == 0
    assert "daily" in out
    assert "1 unpriced" in out
    code, out, _ = _budget("rm", "daily", "--db", sqlite_url)
    assert code == 0
    code, _, err = _budget("rm", "daily", "--db", sqlite_url)
    assert code == 1
    assert "no budget named 'daily'" in err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--limit", "0"], "--limit"),
        (["--limit", "-3"], "--limit"),
        (["--limit", "1", "--window", "fortnight"], "--window"),
        (["--limit", "1", "--tz", "Nowhere/Land"], "--tz"),
        (["--limit", "1", "--scope", "team=x"], "--scope"),
        (["--limit", "1", "--action", "stop"], "--action"),
        (["--limit", "1", "--warn", "fifty"], "--warn"),
    ],
)
def test_bad_input_names_the_option(sqlite_url: str, args: list[str], option: str) -> None:
    code, _, err = _budget("set", "b", *args, "--db", sqlite_url)
    assert code == 2
    assert f"error: {option}:" in err


def test_status_of_an_unknown_budget_fails(sqlite_url: str) -> None:
    code, _, err = _budget("status", "nope", "--db", sqlite_url)
    assert code == 2
    assert "no budget named 'nope'" in err


def test_daily_and_monthly_show_the_budgets_the_report_covers(sqlite_url: str) -> None:
    code, _, err = _budget("set", "claude-day", "--limit", "10", "--window", "day",
                           "--scope", "agent=claude", "--db", sqlite_url)  # fmt: skip
    assert code == 0, err
    code, _, err = _budget("set", "codex", "--limit", "5", "--scope", "agent=codex",
                           "--db", sqlite_url)  # fmt: skip
    assert code == 0, err
    with Ledger(sqlite_url) as ledger, ledger.run("task", agent="claude"):
        ledger.record(Usage(input_tokens=1), model="m", cost_usd="2")
    _register_commands(["daily"])
    for command, extra, shown, hidden in (
        ("daily", [], ["claude-day", "codex"], []),
        ("monthly", ["--agent", "claude"], ["claude-day"], ["codex"]),
    ):
        result = runner.invoke(
            app,
            [command, "--no-import", "--db", sqlite_url, *extra],
            env={"COLUMNS": "200"},
        )
        assert result.exit_code == 0, result.output
        table = result.stdout.split("budgets", 1)[1]  # the budgets table, under the report
        for name in shown:
            assert name in table
        for name in hidden:
            assert name not in table
    assert "$2.00" in table
    assert "$10.00" in table
