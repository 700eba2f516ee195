"""llmledger run / run_agent: output passed through byte for byte, exit codes kept, usage
recorded for every ending (success, failure, signal, timeout), driven by tests/fake_agent.py."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llmledger.ledger import Ledger
from llmledger.runner import USAGE_MARKERS, run_agent, run_command

FAKE = str(Path(__file__).with_name("fake_agent.py"))
LLMLEDGER = str(Path(sys.executable).with_name("llmledger"))
ENV = dict(os.environ)


def fake(*args: str) -> list[str]:
    return [sys.executable, FAKE, *args]


def cli(db: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [LLMLEDGER, "run", "--db", db, *args],
        input=stdin,
        capture_output=True,
        env=ENV,
        check=False,
    )


def task_runs(ledger: Ledger) -> list[dict[str, object]]:
    from sqlalchemy import select

    from llmledger.store.schema import runs

    with ledger.repository.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(runs).order_by(runs.c.started_at)).mappings()]


# -- the CLI: pass-through and exit codes -------------------------------------------------------


def test_cli_passes_stdin_through(sqlite_url: str) -> None:
    stdin = b"binary \x00\xff\r\n input\n" * 5000
    done = cli(sqlite_url, "-q", "--", *fake("--emit", "text", "--echo-stdin"), stdin=stdin)
    assert done.returncode == 0
    assert done.stdout == stdin + b"no usage here, just text\n"
    assert done.stderr == b""


def test_cli_passes_stdout_and_stderr_through_byte_for_byte(sqlite_url: str) -> None:
    args = ("--emit", "claude-json", "--tag", "t1", "--stderr", "agent warning\n")
    direct = subprocess.run(fake(*args), capture_output=True, env=ENV, check=True)
    wrapped = cli(sqlite_url, "--task", "1.1", "--", *fake(*args))
    assert wrapped.returncode == 0
    assert wrapped.stdout == direct.stdout
    assert wrapped.stderr == direct.stderr == b"agent warning\n"
    with Ledger(sqlite_url) as ledger:
        rows = task_runs(ledger)
        task = next(r for r in rows if r["kind"] == "task")
        assert task["key"] == "1.1"
        assert task["status"] == "succeeded"
        totals = ledger.totals(str(task["id"]))
    assert totals.usage.total_tokens == 47324
    assert totals.cost_usd is not None
    assert float(totals.cost_usd) == pytest.approx(0.0782813)


@pytest.mark.parametrize(
    ("args", "code", "status"),
    [
        (("--emit", "claude-json"), 0, "succeeded"),
        (("--emit", "claude-error", "--exit", "1"), 1, "failed"),
        (("--emit", "claude-json", "--die", "SIGKILL"), 128 + signal.SIGKILL, "failed"),
        (("--emit", "claude-json", "--die", "SIGTERM"), 128 + signal.SIGTERM, "failed"),
    ],
)
def test_cli_keeps_the_exit_code_and_records_every_ending(
    sqlite_url: str, args: tuple[str, ...], code: int, status: str
) -> None:
    done = cli(sqlite_url, "--task", "t", "--workflow", "wf", "--", *fake(*args))
    assert done.returncode == code
    with Ledger(sqlite_url) as ledger:
        rows = task_runs(ledger)
        kinds = {str(r["kind"]): r for r in rows}
        assert set(kinds) == {"workflow", "task", "attempt"}
        assert kinds["task"]["parent_id"] == kinds["workflow"]["id"]
        assert kinds["attempt"]["parent_id"] == kinds["task"]["id"]
        assert kinds["task"]["status"] == status
        # The output was printed before the ending, so its usage is recorded in every case.
        assert ledger.totals(str(kinds["workflow"]["id"])).usage.total_tokens in (47324, 29939)


def test_cli_records_unrecognized_output_as_a_run_with_a_warning(sqlite_url: str) -> None:
    done = cli(sqlite_url, "--", *fake("--emit", "text"))
    assert done.returncode == 0
    assert done.stdout == b"no usage here, just text\n"
    assert b"llmledger: no usage recognized" in done.stderr
    with Ledger(sqlite_url) as ledger:
        task = next(r for r in task_runs(ledger) if r["kind"] == "task")
        assert task["status"] == "succeeded"
        assert task["name"] == Path(sys.executable).name
        assert ledger.totals(str(task["id"])).calls == 0


def test_cli_timeout_exits_124_and_keeps_the_streamed_usage(sqlite_url: str) -> None:
    done = cli(
        sqlite_url, "--timeout", "2", "--", *fake("--emit", "claude-stream", "--hang-after", "4")
    )
    assert done.returncode == 124
    with Ledger(sqlite_url) as ledger:
        attempt = next(r for r in task_runs(ledger) if r["kind"] == "attempt")
        assert attempt["status"] == "timed_out"
        # Lines 2-4 are three copies of the first message: one call, counted once.
        usage = ledger.totals(str(attempt["id"])).usage
        assert (usage.input_tokens, usage.cache_write_tokens, usage.output_tokens) == (
            3,
            12480,
            311,
        )


# -- the Python API -----------------------------------------------------------------------------


def test_run_agent_reports_death_by_signal_as_a_field(sqlite_url: str) -> None:
    sink = io.BytesIO()
    with Ledger(sqlite_url) as ledger:
        result = run_agent(
            fake("--emit", "codex", "--die", "SIGTERM"),
            ledger=ledger,
            task="c1",
            model="gpt-5-codex",
            stdout=sink,
        )
    assert result.signal == signal.SIGTERM
    assert result.returncode == -signal.SIGTERM
    assert result.exit_code == 128 + signal.SIGTERM
    assert result.status == "failed"
    assert result.format == "codex_exec_json"
    # codex exec names no model: the one given fills it in, so the call is priced.
    assert [c.model for c in result.calls] == ["gpt-5-codex"]
    assert result.totals.usage.to_dict()["cache_read_tokens"] == 17280
    assert result.totals.cost_usd is not None
    assert sink.getvalue().count(b"\n") == 4


@pytest.mark.parametrize("emit", ["claude-json", "claude-verbose", "claude-stream", "gemini"])
def test_run_agent_recognizes_each_format(sqlite_url: str, emit: str) -> None:
    expected = {
        "claude-json": 47324,
        "claude-verbose": 44068,
        "claude-stream": 44068,
        "gemini": 50356,
    }
    with Ledger(sqlite_url) as ledger:
        result = run_agent(fake("--emit", emit), ledger=ledger, stdout=io.BytesIO())
    assert result.status == "succeeded"
    assert result.warnings == []
    assert result.totals.usage.total_tokens == expected[emit]


def test_plain_text_lines_between_json_lines_do_not_lose_the_usage(
    sqlite_url: str, fixtures_dir: Path
) -> None:
    stream = fixtures_dir / "claude-code" / "claude-stream-json.jsonl"
    script = f"echo 'Update available: run claude update'; cat '{stream}'"
    with Ledger(sqlite_url) as ledger:
        result = run_agent(["sh", "-c", script], ledger=ledger, stdout=io.BytesIO())
    assert result.totals.usage.total_tokens == 44068
    assert any("non-JSON line" in warning for warning in result.warnings)


def test_retries_of_the_same_output_do_not_fold_into_one_call(sqlite_url: str) -> None:
    # Each invocation of the fake agent has fresh message ids, as real attempts do.
    with Ledger(sqlite_url) as ledger:
        first = run_agent(fake("--emit", "claude-json"), ledger=ledger, stdout=io.BytesIO())
        second = run_agent(fake("--emit", "claude-json"), ledger=ledger, stdout=io.BytesIO())
        assert first.totals.usage.total_tokens == second.totals.usage.total_tokens == 47324
        assert ledger.repository.counts()["calls"] == 4


def test_a_command_that_cannot_start_is_recorded_as_failed(sqlite_url: str) -> None:
    with Ledger(sqlite_url) as ledger:
        result = run_agent(["/nonexistent/agent", "-p", "x"], ledger=ledger)
        assert result.exit_code == 127
        assert result.status == "failed"
        assert "cannot start" in result.warnings[0]
        statuses = {r["kind"]: r["status"] for r in task_runs(ledger)}
    assert statuses == {"task": "failed", "attempt": "failed"}


def test_capture_limit_keeps_only_usage_lines_and_loses_no_usage(tmp_path: Path) -> None:
    data = subprocess.run(fake("--emit", "claude-stream"), capture_output=True, env=ENV).stdout
    small = run_command(fake("--emit", "claude-stream"), stdout=io.BytesIO(), capture_limit=512)
    whole = run_command(fake("--emit", "claude-stream"), stdout=io.BytesIO())
    assert small.filtered
    assert not whole.filtered
    assert len(whole.output) == len(data)
    kept = small.output.splitlines()
    assert all(any(m in line for m in USAGE_MARKERS) for line in kept)
    assert len(kept) == 8  # 7 assistant lines and the result; init and user lines dropped
    from llmledger.sources import parse

    assert parse(small.output).usage == parse(whole.output).usage


def test_status_events_follow_the_task(sqlite_url: str) -> None:
    from sqlalchemy import select

    from llmledger.store.schema import task_status_events

    with Ledger(sqlite_url) as ledger:
        run_agent(fake("--emit", "claude-json"), ledger=ledger, task="k", stdout=io.BytesIO())
        with ledger.repository.engine.connect() as conn:
            rows = conn.execute(select(task_status_events)).mappings().all()
    assert [(r["from_status"], r["to_status"]) for r in rows] == [
        (None, "running"),
        ("running", "succeeded"),
    ]
    assert all(r["task_key"] == "k" for r in rows)
    assert json.loads(json.dumps(rows[1]["metadata"]))["num_turns"] == 3


def test_transcripts_imported_during_the_run_are_superseded_by_its_record(
    sqlite_url: str, fixtures_dir: Path, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from llmledger.imports import import_logs

    stream = fixtures_dir / "claude-code" / "claude-stream-json.jsonl"
    session = "5c1e8f3a-7b2d-4e6f-9a0c-3d8b1f4e2a7c"
    project = tmp_path / "projects" / "-home-dev-pager"
    project.mkdir(parents=True)
    now = datetime.now(UTC).isoformat()
    lines = [
        json.dumps(
            {
                "type": "assistant",
                "sessionId": session,
                "requestId": "req_" + event["message"]["id"],
                "timestamp": now,
                "message": event["message"],
            }
        )
        for event in (json.loads(raw) for raw in stream.read_text().splitlines())
        if event.get("type") == "assistant"
    ]
    (project / f"{session}.jsonl").write_text("\n".join(lines) + "\n")
    with Ledger(sqlite_url) as ledger:
        imported = import_logs(ledger.repository, ["claude"], [tmp_path / "projects"])
        assert imported.calls_added == 3  # the transcripts, seen before the run records
        result = run_agent(["cat", str(stream)], ledger=ledger, stdout=io.BytesIO())
        assert len(result.calls) == 3
        assert ledger.repository.counts()["calls"] == 3  # the run's own, not 6
        again = import_logs(ledger.repository, ["claude"], [tmp_path / "projects"])
        assert again.calls_added == 0
