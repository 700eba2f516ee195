"""Plans: the model and its errors, the orchestrator (retries, timeouts, parallel tasks,
budget, cancel), usage-report.json, the session report, task logs and the estimate.

The agents are tests/fake_agent.py, named by LLMLEDGER_CLAUDE_BIN / LLMLEDGER_CODEX_BIN."""

from __future__ import annotations

import json
import os
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmledger.cli._app import _register_commands, app
from llmledger.ledger import Ledger
from llmledger.plans.estimate import estimate_plan
from llmledger.plans.model import PlanError, load_plan, plan_from_dict
from llmledger.plans.orchestrator import PlanOptions, agent_command, run_plan
from llmledger.plans.report import plan_report
from llmledger.store.schema import runs, task_status_events

FAKE = str(Path(__file__).with_name("fake_agent.py"))
ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "src" / "llmledger" / "plans" / "plan.schema.json"
EXAMPLE = ROOT / "docs" / "examples" / "plan.yaml"
SUCCESS_COST = 0.0782813  # claude-json-success.json total_cost_usd
HANG_CALL_TOKENS = 3 + 12480 + 311  # the first stream message, printed before the hang


@pytest.fixture(autouse=True)
def fake_agents(monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path) -> None:
    cmd = f"{sys.executable} {FAKE}"
    monkeypatch.setenv("LLMLEDGER_CLAUDE_BIN", cmd)
    monkeypatch.setenv("LLMLEDGER_CODEX_BIN", cmd)


def write_plan(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def must_show_plan(tmp_path: Path) -> dict[str, Any]:
    """2 sections x 3 tasks: one fails once then succeeds, one times out on every attempt,
    two run in parallel (they meet on a FIFO, which only works when both run at once)."""
    fifo = tmp_path / "meet"
    os.mkfifo(fifo)
    counter = tmp_path / "flaky.count"
    return {
        "name": "Refactor pager",
        "defaults": {
            "agent": "claude",
            "model": "claude-sonnet-4-5",
            "max_attempts": 3,
            "timeout": 30,
            "on_failure": "continue",
        },
        "sections": [
            {
                "id": "s1",
                "name": "Fix",
                "tasks": [
                    {"id": "1.1", "name": "Fix off-by-one", "prompt": "fix the pager"},
                    {
                        "id": "1.2",
                        "name": "Flaky fix",
                        "prompt": f"fix it fake: --fail-times 1 --counter {counter}",
                    },
                    {
                        "id": "1.3",
                        "name": "Hangs",
                        "prompt": "fake: --emit claude-stream --hang-after 4",
                        "max_attempts": 2,
                        "timeout": 2,
                    },
                ],
            },
            {
                "id": "s2",
                "name": "Tests",
                "tasks": [
                    {
                        "id": "2.1",
                        "name": "Codex A",
                        "agent": "codex",
                        "model": "gpt-5-codex",
                        "prompt": f"a fake: --meet {fifo}:w",
                        "parallel": True,
                    },
                    {
                        "id": "2.2",
                        "name": "Codex B",
                        "agent": "codex",
                        "model": "gpt-5-codex",
                        "prompt": f"b fake: --meet {fifo}:r",
                        "parallel": True,
                    },
                    {
                        "id": "2.3",
                        "name": "Verbose",
                        "command": [sys.executable, FAKE, "--emit", "claude-verbose"],
                        "depends_on": ["2.1", "2.2"],
                    },
                ],
            },
        ],
    }


def rows(ledger: Ledger, table: Any) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(table.select()).mappings()]


# -- the must-show run --------------------------------------------------------------------------


def test_plan_keeps_every_attempts_usage_and_the_totals_add_up(
    tmp_path: Path, sqlite_url: str
) -> None:
    plan = load_plan(write_plan(tmp_path / "plan.yaml", must_show_plan(tmp_path)))
    lines: list[str] = []
    with Ledger(sqlite_url) as ledger:
        outcome = run_plan(plan, ledger, PlanOptions(parallel=2, echo=lines.append))
        report = plan_report(outcome)
        run_rows = {r["id"]: r for r in rows(ledger, runs)}
        attempts = [r for r in run_rows.values() if r["kind"] == "attempt"]
        attempt_totals = {a["id"]: ledger.totals(a["id"]) for a in attempts}
        events = rows(ledger, task_status_events)

    statuses = {t["id"]: (t["status"], t["attempts"]) for t in report["tasks"]}
    assert statuses == {
        "1.1": ("succeeded", 1),
        "1.2": ("succeeded", 2),
        "1.3": ("timed_out", 2),
        "2.1": ("succeeded", 1),
        "2.2": ("succeeded", 1),
        "2.3": ("succeeded", 1),
    }
    assert report["status"] == "failed"
    # Every attempt, including the failed one and both timed-out ones, has its usage.
    assert len(attempts) == 8
    assert all(t.usage.total_tokens for t in attempt_totals.values())
    hung = [a for a in attempts if a["status"] == "timed_out"]
    assert len(hung) == 2
    assert all(attempt_totals[a["id"]].usage.total_tokens == HANG_CALL_TOKENS for a in hung)
    # The plan total is the sum of the attempts; the sections add up to it; so do the tasks.
    plan_tokens = report["totals"]["total_tokens"]
    assert plan_tokens == sum(t.usage.total_tokens or 0 for t in attempt_totals.values())
    assert plan_tokens == sum(s["total_tokens"] for s in report["sections"])
    assert plan_tokens == sum(t["total_tokens"] for t in report["tasks"])
    plan_cost = sum(t.cost_usd or Decimal(0) for t in attempt_totals.values())
    assert report["totals"]["cost_usd"] == pytest.approx(float(plan_cost))
    assert report["totals"]["cost_usd"] == pytest.approx(
        sum(s["cost_usd"] for s in report["sections"])
    )
    assert report["totals"]["unpriced_calls"] == 0
    # The retried task: a failed attempt (error_max_turns, 29,939 tokens) and a success.
    flaky = next(t for t in report["tasks"] if t["id"] == "1.2")
    assert [a["status"] for a in flaky["attempt_details"]] == ["failed", "succeeded"]
    assert flaky["total_tokens"] == 29939 + 47324
    # The run tree: plan -> section -> task -> attempt.
    for attempt in attempts:
        task = run_rows[attempt["parent_id"]]
        section = run_rows[task["parent_id"]]
        assert (task["kind"], section["kind"]) == ("task", "section")
        assert run_rows[section["parent_id"]]["kind"] == "plan"
    # Status events for every change, retries included.
    flaky_events = [(e["from_status"], e["to_status"]) for e in events if e["task_key"] == "1.2"]
    assert flaky_events == [
        ("pending", "running"),
        ("running", "retrying"),
        ("retrying", "running"),
        ("running", "succeeded"),
    ]
    # A line per task with the running plan total.
    assert len([line for line in lines if "plan total" in line]) == 6


def test_plan_cli_writes_the_report_and_task_logs(tmp_path: Path, sqlite_url: str) -> None:
    path = write_plan(tmp_path / "plan.yaml", must_show_plan(tmp_path))
    _register_commands()
    result = CliRunner().invoke(
        app, ["plan", "run", str(path), "--parallel", "2", "--db", sqlite_url]
    )
    assert result.exit_code == 1, result.output  # one task timed out
    report = json.loads((tmp_path / "usage-report.json").read_text())
    assert set(report) >= {"plan_name", "plan_path", "completed_at", "status", "totals"}
    assert set(report["totals"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "total_tokens",
        "cost_usd",
        "unpriced_calls",
        "cache_hit_rate",
        "num_turns",
        "duration_api_ms",
    }
    assert {"id", "name", "task_count", "cost_usd", "total_tokens"} <= set(report["sections"][0])
    assert {"id", "section_id", "name", "status", "attempts", "model", "cost_usd"} <= set(
        report["tasks"][0]
    )
    assert report["totals"]["num_turns"] == 3 + (2 + 3) + 3  # Claude results: 1.1, 1.2, 2.3
    log = (tmp_path / "logs" / "plan" / "task-1.2.log").read_text()
    header = log.split("# ---")[0]
    assert "status: succeeded  attempts: 2" in header
    assert "return code: 0" in header
    assert "total 77,263" in header
    assert "===== attempt 2:" in log
    assert "plan total" in result.output


# -- budget -------------------------------------------------------------------------------------


def sequential_plan(n: int, budget: float | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Budgeted",
        "defaults": {"model": "claude-sonnet-4-5", "max_attempts": 1, "timeout": 60},
        "sections": [
            {
                "id": "s",
                "tasks": [{"id": f"t{i}", "prompt": f"task {i}"} for i in range(1, n + 1)],
            }
        ],
    }
    if budget is not None:
        data["budget"] = {"max_cost_usd": budget}
    return data


@pytest.mark.parametrize("where", ["flag", "plan"])
def test_budget_stops_the_plan_before_the_right_task(
    tmp_path: Path, sqlite_url: str, where: str
) -> None:
    # Each task costs $0.0783: after t2 the spend ($0.1566) passes $0.15, so t3 never starts.
    data = sequential_plan(4, budget=0.15 if where == "plan" else None)
    plan = load_plan(write_plan(tmp_path / "plan.yaml", data))
    limit = Decimal("0.15") if where == "flag" else None
    lines: list[str] = []
    with Ledger(sqlite_url) as ledger:
        outcome = run_plan(plan, ledger, PlanOptions(max_cost_usd=limit, echo=lines.append))
    statuses = [outcome.tasks[f"t{i}"].status for i in range(1, 5)]
    assert statuses == ["succeeded", "succeeded", "not_started", "not_started"]
    assert outcome.status == "paused_budget"
    assert outcome.reason is not None
    assert "budget reached: $0.1566" in outcome.reason
    assert "not started: t3, t4" in outcome.reason
    assert float(outcome.totals.cost_usd or 0) == pytest.approx(2 * SUCCESS_COST)
    assert any("no new task starts" in line for line in lines)


# -- sessions, cancel ---------------------------------------------------------------------------


def test_session_over_a_directory_of_plans(tmp_path: Path, sqlite_url: str) -> None:
    items = tmp_path / "items"
    items.mkdir()
    write_plan(items / "a.yaml", sequential_plan(1))
    write_plan(items / "b.yaml", sequential_plan(2))
    _register_commands()
    result = CliRunner().invoke(app, ["plan", "run", str(items), "--db", sqlite_url, "--json"])
    assert result.exit_code == 0, result.output
    session = json.loads((items / "session-usage-report.json").read_text())
    assert [w["status"] for w in session["work_items"]] == ["succeeded", "succeeded"]
    assert session["totals"]["total_tokens"] == 3 * 47324
    assert session["totals"]["total_tokens"] == sum(
        w["totals"]["total_tokens"] for w in session["work_items"]
    )
    # Plans sharing a directory get one report each, named after the plan.
    assert (
        json.loads((items / "a.usage-report.json").read_text())["totals"]["total_tokens"] == 47324
    )
    with Ledger(sqlite_url) as ledger:
        kinds = sorted({r["kind"] for r in rows(ledger, runs)})
    assert kinds == ["attempt", "plan", "section", "session", "task", "work_item"]


def test_cancel_stops_the_running_attempt_and_still_reports(
    tmp_path: Path, sqlite_url: str
) -> None:
    data = sequential_plan(3)
    data["sections"][0]["tasks"][1]["prompt"] = "fake: --emit claude-stream --hang-after 4"
    plan = load_plan(write_plan(tmp_path / "plan.yaml", data))
    cancel = threading.Event()

    def echo(line: str) -> None:
        if line.startswith("  t2 attempt 1:"):  # printed just before t2 starts
            cancel.set()

    options = PlanOptions(verbose=True, echo=echo, cancel=cancel, kill_grace=2)
    with Ledger(sqlite_url) as ledger:
        outcome = run_plan(plan, ledger, options)
    assert outcome.status == "cancelled"
    assert [outcome.tasks[t].status for t in ("t1", "t2", "t3")] == [
        "succeeded",
        "cancelled",
        "not_started",
    ]
    assert plan_report(outcome)["status"] == "cancelled"


# -- the plan file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("name"), "plan.yaml: name: is required"),
        (
            lambda d: d["sections"][0]["tasks"][0].update(dependson=[]),
            "sections[0].tasks[0].dependson: unknown field (did you mean 'depends_on'?)",
        ),
        (
            lambda d: d["sections"][0]["tasks"][0].update(depends_on=["t2"]),
            "sections[0].tasks[0].depends_on: unknown task 't2'",
        ),
        (
            lambda d: d["sections"][0]["tasks"][0].update(command=["x"]),
            "exactly one of 'prompt' (for an agent) or 'command'",
        ),
        (
            lambda d: d["sections"][0]["tasks"][0].update(agent="cursor"),
            "sections[0].tasks[0].agent: unknown agent 'cursor'",
        ),
        (
            lambda d: d["sections"][0]["tasks"][1].update(id=1.1),
            "sections[0].tasks[1].id: must be a string; quote it",
        ),
        (lambda d: d["defaults"].update(timeout=-1), "defaults.timeout: must be a positive"),
        (lambda d: d.update(budget={"max_cost_usd": "lots"}), "budget.max_cost_usd"),
    ],
)
def test_plan_errors_name_the_file_and_the_field(tmp_path: Path, change: Any, message: str) -> None:
    data = sequential_plan(2)
    change(data)
    path = write_plan(tmp_path / "plan.yaml", data)
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert str(path) in str(info.value)
    assert message.removeprefix("plan.yaml: ") in str(info.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsections: [\n")
    with pytest.raises(PlanError, match=r"bad.yaml: not valid YAML at line"):
        load_plan(path)


def test_agent_command_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMLEDGER_CLAUDE_BIN")
    monkeypatch.delenv("LLMLEDGER_CODEX_BIN")
    plan = plan_from_dict(
        {
            "name": "p",
            "defaults": {"model": "m"},
            "sections": [
                {
                    "id": "s",
                    "tasks": [
                        {"id": "c", "prompt": "hi"},
                        {"id": "x", "prompt": "hi", "agent": "codex", "args": ["--full-auto"]},
                        {"id": "g", "prompt": "hi", "agent": "gemini"},
                        {"id": "r", "command": ["make", "test"]},
                    ],
                }
            ],
        }
    )
    c, x, g, r = plan.tasks
    assert agent_command(c) == ["claude", "-p", "hi", "--output-format", "json", "--model", "m"]
    assert agent_command(c, verbose=True)[3:6] == ["--output-format", "stream-json", "--verbose"]
    assert agent_command(x) == ["codex", "exec", "--json", "--model", "m", "--full-auto", "hi"]
    assert agent_command(g) == ["gemini", "-p", "hi", "--output-format", "json", "-m", "m"]
    assert agent_command(r) == ["make", "test"]
    assert r.agent is None


def test_example_and_test_plans_match_the_json_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    examples = [yaml.safe_load(EXAMPLE.read_text()), sequential_plan(2, budget=1.0)]
    for data in examples:
        jsonschema.validate(data, schema)
        plan_from_dict(data)  # and our own validation agrees
    bad = sequential_plan(1)
    bad["sections"][0]["tasks"][0]["dependson"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_dry_run_runs_nothing(tmp_path: Path, sqlite_url: str) -> None:
    path = write_plan(tmp_path / "plan.yaml", sequential_plan(2))
    _register_commands()
    result = CliRunner().invoke(app, ["plan", "run", str(path), "--dry-run", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "--output-format json" in result.output
    assert not (tmp_path / "usage-report.json").exists()


# -- estimate -----------------------------------------------------------------------------------


def test_estimate_from_history_else_from_the_prompt(tmp_path: Path, sqlite_url: str) -> None:
    data = sequential_plan(2)
    data["sections"][0]["tasks"].append({"id": "cmd", "command": ["true"]})
    plan = load_plan(write_plan(tmp_path / "plan.yaml", data))
    with Ledger(sqlite_url) as ledger:
        before = estimate_plan(plan, ledger.repository)
        assert [t.basis for t in before.tasks] == ["estimate", "estimate", "unknown"]
        assert before.tasks[0].expected_usd is not None
        ran = load_plan(write_plan(tmp_path / "ran.yaml", sequential_plan(2)))
        run_plan(ran, ledger, PlanOptions(echo=lambda _: None))
        after = estimate_plan(plan, ledger.repository)
    first = after.tasks[0]
    assert (first.basis, first.samples) == ("history", 1)
    assert float(first.expected_usd or 0) == pytest.approx(SUCCESS_COST)
    assert float(first.p90_usd or 0) == pytest.approx(SUCCESS_COST)
    _register_commands()
    result = CliRunner().invoke(
        app, ["plan", "estimate", str(tmp_path / "plan.yaml"), "--json", "--db", sqlite_url]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [t["basis"] for t in doc["tasks"]] == ["history", "history", "unknown"]
    assert doc["unknown_tasks"] == 1
