"""``plan estimate``: the expected duration of a plan beside its cost, from past attempts of
tasks with the same key (else unknown), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from typer.testing import CliRunner

from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.plans.estimate import estimate_plan
from llmledger.plans.model import load_plan
from llmledger.store import Repository, open_repository

T0 = datetime(2026, 12, 1, tzinfo=UTC)

PLAN = {
    "name": "Timed",
    "defaults": {"model": "claude-sonnet-4-5", "max_attempts": 2},
    "sections": [
        {"id": "s", "tasks": [{"id": "t1", "prompt": "one"}, {"id": "t2", "prompt": "two"}]}
    ],
}


def _attempts(repo: Repository, key: str, hours: list[float]) -> None:
    task = repo.create_run("task", key=key, started_at=T0)
    start = T0
    for number, spent in enumerate(hours, 1):
        attempt = repo.create_run("attempt", parent_id=task, attempt=number, started_at=start)
        start += timedelta(hours=spent)
        repo.finalize_run(
            attempt, "failed" if number < len(hours) else "succeeded", finished_at=start
        )
    repo.finalize_run(task, "succeeded", finished_at=start)


def test_plan_duration_from_past_attempts(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(PLAN), encoding="utf-8")
    repo = open_repository(db_url)
    try:
        _attempts(repo, "t1", [1.0, 3.0])  # median attempt: 2 h
        _attempts(repo, "other", [9.0])  # another key: not t1's nor t2's
        result = estimate_plan(load_plan(path), repo)
    finally:
        repo.engine.dispose()
    assert [(t.task_id, t.expected_hours, t.duration_samples) for t in result.tasks] == [
        ("t1", 2.0, 2),
        ("t2", None, 0),
    ]
    assert (result.expected_hours, result.unknown_durations) == (2.0, 1)
    _register_commands(["plan"])
    runner = CliRunner()
    document = json.loads(
        runner.invoke(app, ["plan", "estimate", str(path), "--json", "--db", db_url]).stdout
    )
    assert (document["expected_hours"], document["unknown_duration_tasks"]) == (2.0, 1)
    assert document["tasks"][0]["expected_hours"] == 2.0
    text = runner.invoke(app, ["plan", "estimate", str(path), "--db", db_url]).stdout
    assert "duration 2.00 h (1 task(s) never run before: not counted)" in " ".join(text.split())
