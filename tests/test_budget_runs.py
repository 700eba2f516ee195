"""``llmledger run`` and ``plan run`` check the block budgets before an attempt starts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmledger import Ledger, Usage
from llmledger.budgets import make_budget, set_budget
from llmledger.cli._app import _register_commands, app
from llmledger.plans.model import load_plan
from llmledger.plans.orchestrator import PlanOptions, run_plan

FAKE = str(Path(__file__).with_name("fake_agent.py"))


@pytest.fixture(autouse=True)
def fake_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMLEDGER_CLAUDE_BIN", f"{sys.executable} {FAKE}")


def _plan(tmp_path: Path, n: int) -> Path:
    data: dict[str, Any] = {
        "name": "Budgeted",
        "defaults": {"model": "claude-sonnet-4-5", "max_attempts": 1, "timeout": 60},
        "sections": [
            {"id": "s", "tasks": [{"id": f"t{i}", "prompt": f"task {i}"} for i in range(1, n + 1)]}
        ],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_plan_run_stops_before_a_task_a_spent_budget_covers(
    tmp_path: Path, sqlite_url: str
) -> None:
    # Each task costs $0.0783 (the fake agent's Claude output): after t2 ($0.1566) the
    # agent's $0.15 budget is spent, so t3 never starts.
    plan = load_plan(_plan(tmp_path, 4))
    lines: list[str] = []
    with Ledger(sqlite_url) as ledger:
        set_budget(ledger.repository, make_budget("claude", "0.15", scope=["agent=claude"]))
        outcome = run_plan(plan, ledger, PlanOptions(echo=lines.append))
    statuses = [outcome.tasks[f"t{i}"].status for i in range(1, 5)]
    assert statuses == ["succeeded", "succeeded", "not_started", "not_started"]
    assert outcome.status == "paused_budget"
    assert outcome.reason is not None
    assert "budget 'claude' would be exceeded" in outcome.reason
    assert any("no new task starts" in line for line in lines)


def test_llmledger_run_does_not_start_the_command_when_a_budget_is_spent(
    tmp_path: Path, sqlite_url: str
) -> None:
    with Ledger(sqlite_url) as ledger:
        set_budget(ledger.repository, make_budget("nightly", "1", scope=["workflow=nightly"]))
        with ledger.run("workflow", key="nightly"):
            ledger.record(Usage(input_tokens=1), model="m", cost_usd="1")
    marker = tmp_path / "started"
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]
    _register_commands(["run"])
    other = CliRunner().invoke(
        app, ["run", "--db", sqlite_url, "--workflow", "other", "--", *command]
    )
    assert other.exit_code == 0, other.output
    assert marker.exists()  # another workflow is not in the budget's scope
    marker.unlink()
    result = CliRunner().invoke(
        app, ["run", "--db", sqlite_url, "--workflow", "nightly", "--task", "t1", "--", *command]
    )
    assert result.exit_code == 3
    assert "budget 'nightly' would be exceeded" in result.stderr
    assert "was not started" in result.stderr
    assert not marker.exists()
