"""A remote Ledger against a real server (tests/server.py): runs, attempts, calls, finishes and
status events arrive as a local ledger stores them, on SQLite and PostgreSQL; totals() reads
them back; a call the server refuses goes to the dead letters and the rest arrive."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from llmledger import Usage
from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.ledger import Ledger
from llmledger.store import open_repository
from llmledger.store.schema import task_status_events
from server import ServerProcess

runner = CliRunner()

_OPENAI = {
    "id": "chatcmpl-remote-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 20},
    },
    "choices": [],
}


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(db_url, log=tmp_path / "server.log") as process:
        yield process


@pytest.fixture
def sqlite_server(sqlite_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(sqlite_url, log=tmp_path / "server.log") as process:
        yield process


@pytest.fixture
def remote(server: ServerProcess, tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(server.url, spool=tmp_path / "spool.db")
    yield ledger
    ledger.close()


@pytest.fixture
def sqlite_remote(sqlite_server: ServerProcess, tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(sqlite_server.url, spool=tmp_path / "spool.db")
    yield ledger
    ledger.close()


def _work(ledger: Ledger) -> None:
    """A plan with a retried task, a skipped one, calls of several kinds and status events."""
    with ledger.run("plan", "Release", key="plan-1", agent="claude") as plan:
        ledger.record(
            Usage(input_tokens=100, output_tokens=10, cache_read_tokens=5),
            model="claude-sonnet-4-5",
        )
        with ledger.run("task", "Fix", key="1.1", command_name="fix") as task:
            try:
                with task.attempt():
                    ledger.record(_OPENAI)
                    raise RuntimeError("first try fails")
            except RuntimeError:
                pass
            with task.attempt():
                ledger.record(
                    Usage(input_tokens=7, output_tokens=1), model="gpt-4o", cost_usd="0.5"
                )
                ledger.record(Usage(input_tokens=3))  # no model: unpriced, still counted
            ledger.add_status_event("done", run=task, from_status="in_progress")
        with ledger.run("task", "Docs", key="1.2") as skipped:
            skipped.set_status("skipped")
        ledger.add_status_event("blocked", task_key="1.3", metadata={"why": "waits on 1.2"})
        plan.annotate(result="shipped")


def _show(url: str, ref: str) -> dict[str, Any]:
    """``llmledger show REF --json`` (in a process of its own: it leaves its PostgreSQL
    connections to the interpreter's exit)."""
    result = subprocess.run(
        [sys.executable, "-m", "llmledger", "show", ref, "--db", url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _shape(node: dict[str, Any]) -> dict[str, Any]:
    """A run node without what differs between two ledgers fed the same work: ids and times."""
    skip = {"id", "started_at", "finished_at", "duration_ms"}
    out = {k: v for k, v in node.items() if k not in skip and k != "children"}
    out["children"] = [_shape(child) for child in node.get("children", [])]
    return out


def _events(url: str) -> list[tuple[Any, ...]]:
    repo = open_repository(url)
    try:
        with repo.engine.connect() as conn:
            rows = conn.execute(
                select(
                    task_status_events.c.task_key,
                    task_status_events.c.from_status,
                    task_status_events.c.to_status,
                    task_status_events.c.agent_id,
                    task_status_events.c.metadata,
                ).order_by(task_status_events.c.task_key)
            ).all()
    finally:
        repo.engine.dispose()
    return [tuple(row) for row in rows]


def test_remote_run_tree_equals_a_local_ones(
    server: ServerProcess, remote: Ledger, sqlite_url: str, tmp_path: Path
) -> None:
    local_url = f"sqlite:///{tmp_path / 'local.db'}"
    with Ledger(local_url) as local:
        _work(local)
    _work(remote)
    assert remote.flush(60)
    assert remote.failures == 0
    local_tree = _show(local_url, "plan-1")
    remote_tree = _show(server.db, "plan-1")
    assert _shape(remote_tree["run"]) == _shape(local_tree["run"])
    assert remote_tree["run"]["inclusive"]["calls"] == 4
    assert [child["status"] for child in remote_tree["run"]["children"]] == [
        "succeeded",
        "skipped",
    ]
    assert _events(server.db) == _events(local_url)


def test_remote_totals_are_the_servers(server: ServerProcess, remote: Ledger) -> None:
    local = Ledger(f"sqlite:///{Path(server.log or '.').parent / 'local2.db'}")
    with local, local.run("task") as here:
        local.record(_OPENAI)
        local.record(Usage(input_tokens=5, output_tokens=5), model="gpt-4o")
    with remote.run("task") as there:
        remote.record(_OPENAI)
        with remote.run("step"):
            remote.record(Usage(input_tokens=5, output_tokens=5), model="gpt-4o")
        # Read while the run is open: totals() drains the spool first.
        totals = there.totals()
        own = there.totals(inclusive=False)
    assert totals.calls == 2
    assert own.calls == 1
    assert totals.usage == local.totals(here.id).usage
    assert totals.cost_usd == local.totals(here.id).cost_usd


def test_a_refused_call_is_dead_lettered_and_the_rest_arrive(
    sqlite_server: ServerProcess, sqlite_remote: Ledger
) -> None:
    server, remote = sqlite_server, sqlite_remote
    with remote.run("task") as run:
        for i in range(10):
            model = "m" * 300 if i == 4 else "gpt-4o"  # over the 255 characters a model may have
            remote.record(Usage(input_tokens=i + 1), model=model)
    assert remote.flush(60)
    assert remote.failures == 1
    assert remote.remote is not None
    status = remote.remote.spool.status()
    assert (status.pending, status.dead) == (0, 1)
    [letter] = remote.remote.spool.dead_letters()
    assert "model" in letter.error
    tree = _show(server.db, run.id)
    assert tree["run"]["own"]["calls"] == 9
    assert tree["run"]["own"]["input_tokens"] == sum(range(1, 11)) - 5


def test_spool_status_and_flush_commands(
    sqlite_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = sqlite_server
    monkeypatch.setenv("LLMLEDGER_DB", server.url)
    monkeypatch.setenv("LLMLEDGER_SPOOL", str(tmp_path / "cli-spool.db"))
    ledger = Ledger(close_timeout=0.0, flush_interval=3600)
    assert ledger.remote is not None
    ledger.remote.sender.stop()  # nothing sent in the background: the command sends it
    with ledger.run("task", key="cli"):
        ledger.record(Usage(input_tokens=1), model="gpt-4o")
    _register_commands(["spool"])
    status = runner.invoke(app, ["spool", "status", "--json"])
    assert status.exit_code == 0, status.output
    [spool] = json.loads(status.output)["spools"]
    assert spool["pending"] == 3
    assert spool["pending_by_kind"] == {"call": 1, "finish": 1, "run": 1}
    assert spool["url"] == server.url
    flushed = runner.invoke(app, ["spool", "flush"])
    assert flushed.exit_code == 0, flushed.output
    assert "sent 3" in flushed.output
    assert _show(server.db, "cli")["run"]["status"] == "succeeded"
    ledger.close()


def test_spool_flush_exits_1_when_the_server_is_down(tmp_path: Path) -> None:
    from server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    ledger = Ledger(url, spool=tmp_path / "down.db", close_timeout=0.0)
    ledger.record(Usage(input_tokens=1), model="gpt-4o")
    ledger.close()
    _register_commands(["spool"])
    result = runner.invoke(
        app, ["spool", "flush", "--db", url, "--spool", str(tmp_path / "down.db"), "--timeout", "1"]
    )
    assert result.exit_code == 1
    assert "left 1" in result.output
    assert "ConnectError" in result.output
