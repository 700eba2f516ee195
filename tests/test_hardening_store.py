"""Hardening of the collector and the store (issue 13, items 1, 2, 16, 21, 22, 23): values
``record()`` is given in the wrong type, concurrent first opens of a SQLite file, ledgers of a
newer version, read-only ledgers, repair times and the permissions of what llmledger creates."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from llmledger import Call, Usage
from llmledger.cli._app import _register_commands, app
from llmledger.errors import StoreError, UsageError
from llmledger.ledger import Ledger, repair_stale_runs
from llmledger.store import open_engine, open_repository
from llmledger.store.schema import calls, runs

MODEL = "claude-sonnet-4-5"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    with Ledger(sqlite_url) as book:
        yield book


class _Observer:
    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []

    def on_record(self, call: Any, price: Any, run: Any) -> None:
        pass

    def on_finalize(self, run: Any, status: str, totals: Any) -> None:
        pass

    def on_failure(self, error: BaseException, what: str) -> None:
        self.failures.append((what, str(error)))


def _stored(ledger: Ledger) -> list[dict[str, Any]]:
    with ledger.repository.engine.connect() as conn:
        rows = conn.execute(select(calls).order_by(calls.c.recorded_at)).mappings()
        return [dict(row) for row in rows]


# -- 1: record() takes money and times in the types users pass ----------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (0.0123, Decimal("0.0123")),
        (2, Decimal(2)),
        ("0.5", Decimal("0.5")),
        (Decimal("0.000001"), Decimal("0.000001")),
        (0.1 + 0.2, Decimal("0.3")),  # stored to the pico-dollar, half-even
    ],
)
def test_record_accepts_float_int_and_str_costs_exactly(
    ledger: Ledger, given: Any, stored: Decimal
) -> None:
    calls = ledger.record(Usage(input_tokens=10, output_tokens=2), model=MODEL, cost_usd=given)
    assert len(calls) == 1
    assert ledger.failures == 0
    [row] = _stored(ledger)
    assert row["cost_usd"] == stored
    assert row["cost_status"] == "reported"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2025-06-10T09:00:00Z", datetime(2025, 6, 10, 9, tzinfo=UTC)),
        ("2025-06-10T11:00:00+02:00", datetime(2025, 6, 10, 9, tzinfo=UTC)),
        ("2025-06-10T09:00:00", datetime(2025, 6, 10, 9, tzinfo=UTC)),  # naive: UTC
        (datetime(2025, 6, 10, 9), datetime(2025, 6, 10, 9, tzinfo=UTC)),
    ],
)
def test_record_accepts_iso_strings_and_datetimes(
    ledger: Ledger, given: Any, stored: datetime
) -> None:
    calls = ledger.record(Usage(input_tokens=10, output_tokens=2), model=MODEL, started_at=given)
    assert len(calls) == 1
    assert ledger.failures == 0
    [row] = _stored(ledger)
    assert row["started_at"] == stored


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cost_usd": "twelve cents"}, "cost_usd"),
        ({"cost_usd": float("nan")}, "cost_usd"),
        ({"cost_usd": -1}, "cost_usd"),
        ({"cost_usd": [1]}, "cost_usd"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"started_at": 1_767_312_001}, "started_at"),
        ({"duration_ms": "slow"}, "duration_ms"),
        ({"duration_ms": -5}, "duration_ms"),
    ],
)
def test_record_keeps_the_tokens_of_a_call_with_a_bad_value_and_flags_it(
    sqlite_url: str, kwargs: dict[str, Any], field: str
) -> None:
    observer = _Observer()
    with Ledger(sqlite_url, observers=[observer]) as ledger:
        calls = ledger.record(Usage(input_tokens=10, output_tokens=2), model=MODEL, **kwargs)
        assert len(calls) == 1
        [row] = _stored(ledger)
        assert (row["input_tokens"], row["output_tokens"]) == (10, 2)
        assert f"bad_{field}" in row["metadata"]["flags"]
        assert field in row["metadata"]["invalid"]
        if field == "cost_usd":  # the caller's cost is unknown: no cost, never a guess
            assert (row["cost_usd"], row["cost_status"]) == (None, "unpriced")
        if field == "started_at":
            assert row["started_at"] is None
        assert ledger.failures == 1
        [(what, message)] = observer.failures
        assert what == "record"
        assert field in message


# -- 2: a SQLite file held in rollback-journal mode by another process -------------------------

_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
conn.execute("BEGIN IMMEDIATE")
conn.execute("CREATE TABLE held (x)")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


def test_an_opener_waits_for_a_writer_holding_the_rollback_journal(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    open_repository(url).engine.dispose()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"

        def release_on_journal_mode(sql: str) -> None:
            # Let the holder go once this process asks for the journal mode: an opener that
            # does not wait fails at once (SQLite does not wait to upgrade a read lock while
            # another connection holds the write lock), well before the holder commits.
            if "journal_mode" in sql and not released.is_set() and holder.stdin is not None:
                released.set()
                holder.stdin.write("go\n")
                holder.stdin.flush()

        released = threading.Event()

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(str(path), check_same_thread=False)
            conn.set_trace_callback(release_on_journal_mode)
            return conn

        engine = open_engine(url, creator=connect)
        from llmledger.store import Repository

        repo = Repository(engine)
        repo.add_calls([Call(Usage(input_tokens=1, output_tokens=1), source="t", dedupe_key="k")])
        assert released.is_set()
        assert holder.stdout.readline().strip() == "released"
        assert repo.counts()["calls"] == 1
        engine.dispose()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    assert holder.returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM held").fetchone() == (0,)


_WAIT_THEN_MAIN = """
import sys
print("ready", flush=True)
sys.stdin.readline()
sys.argv = ["llmledger", *sys.argv[1:]]
from llmledger.cli import main
main()
"""


def _claude_tree(home: Path, sessions: int, lines: int) -> None:
    for s in range(sessions):
        session = f"{s:08d}-0000-4000-8000-000000000000"
        path = home / "projects" / f"-home-dev-p{s % 3}" / f"{session}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        out = []
        for i in range(lines):
            out.append(
                orjson.dumps(
                    {
                        "parentUuid": None,
                        "isSidechain": False,
                        "cwd": "/home/dev/p",
                        "sessionId": session,
                        "version": "1.0.51",
                        "type": "assistant",
                        "requestId": f"req_{s}_{i}",
                        "timestamp": f"2025-06-{1 + i % 28:02d}T09:00:00Z",
                        "message": {
                            "id": f"msg_{s}_{i}",
                            "type": "message",
                            "role": "assistant",
                            "model": "claude-sonnet-4-20250514",
                            "content": [],
                            "usage": {
                                "input_tokens": 10,
                                "output_tokens": 5 + i,
                                "cache_creation_input_tokens": 3,
                                "cache_read_input_tokens": 100,
                            },
                        },
                    }
                )
                + b"\n"
            )
        path.write_bytes(b"".join(out))


def test_four_first_imports_and_reports_on_a_new_file_all_succeed(tmp_path: Path) -> None:
    home = tmp_path / "claude"
    _claude_tree(home, sessions=12, lines=400)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {
        **os.environ,
        "CLAUDE_CONFIG_DIR": str(home),
        "CODEX_HOME": str(tmp_path / "no-codex"),
        "HOME": str(tmp_path),
        "LLMLEDGER_DB": url,
    }
    commands = [["import", "claude"], ["daily", "--json"]] * 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WAIT_THEN_MAIN, *cmd],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for cmd in commands
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    for proc in procs:  # all four start at once
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.communicate(timeout=300) for proc in procs]
    errors = [
        (cmd, p.returncode, err)
        for cmd, p, (_, err) in zip(commands, procs, results, strict=True)
        if p.returncode != 0
    ]
    assert errors == []
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (12 * 400,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert _mode(tmp_path / "ledger.db") == 0o600  # created private (item 23), whoever won
    for _, (out, _) in zip(commands[1::2], results[1::2], strict=True):
        days = orjson.loads(out)
        assert isinstance(days, (list, dict))


# -- 16: a ledger written by a newer llmledger ---------------------------------------------------


@pytest.fixture
def newer_ledger(sqlite_url: str) -> str:
    repo = open_repository(sqlite_url)
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999ffffffff'"))
    repo.engine.dispose()
    return sqlite_url


NEWER = "this ledger was written by a newer llmledger (revision 9999ffffffff); upgrade llmledger"


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["db", "info"],
        ["daily", "--no-import"],
        ["monthly", "--no-import", "--json"],
        ["sessions", "--no-import"],
        ["blocks", "--no-import"],
        ["runs"],
    ],
)
def test_every_command_says_a_newer_llmledger_wrote_the_ledger(
    newer_ledger: str, command: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmledger", *command, "--db", newer_ledger],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert NEWER in result.stderr


def test_run_and_plan_run_stop_before_the_agent_starts_on_a_newer_ledger(
    newer_ledger: str, tmp_path: Path
) -> None:
    marker = tmp_path / "agent-ran"
    plan = {
        "name": "Newer",
        "defaults": {"agent": "claude", "max_attempts": 1, "timeout": 60},
        "sections": [{"id": "s", "tasks": [{"id": "t1", "prompt": "task 1"}]}],
    }
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    env = {**os.environ, "LLMLEDGER_CLAUDE_BIN": f"touch {marker}"}
    for command in (
        ["run", "--db", newer_ledger, "--", "touch", str(marker)],
        ["plan", "run", str(plan_path), "--db", newer_ledger],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "llmledger", *command],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert NEWER in result.stderr
        assert not marker.exists()


def test_opening_or_upgrading_a_newer_ledger_raises_the_clear_error(db_url: str) -> None:
    from llmledger.store import upgrade

    repo = open_repository(db_url)
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999ffffffff'"))
    with pytest.raises(StoreError, match=r"newer llmledger \(revision 9999ffffffff\)"):
        open_repository(db_url)
    with pytest.raises(StoreError, match=r"newer llmledger \(revision 9999ffffffff\)"):
        upgrade(repo.engine)
    repo.engine.dispose()


# -- 21: a read-only ledger ---------------------------------------------------------------------


def _read_only_view(base: Path) -> list[str]:
    """A prefix that runs a command where ``base`` cannot be written. Root ignores file
    permissions, so as root the command runs in its own mount namespace with ``base``
    bound read-only (EROFS holds for root too; the checkout and its venv stay readable
    wherever they are cloned)."""
    if os.geteuid() != 0:
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, str(base)]


@pytest.fixture
def read_only_ledger() -> Iterator[Path]:
    """A ledger with one call, in a directory that, like the file, nobody may write.

    Not under tmp_path, so that the read-only view of :func:`_read_only_view` covers the
    ledger's directory and the home directory beside it, and nothing else."""
    base = Path(tempfile.mkdtemp(prefix="llmledger-ro-"))
    base.chmod(0o755)
    folder = base / "ro"
    folder.mkdir()
    path = folder / "ledger.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.record(
            Usage(input_tokens=1000, output_tokens=10),
            model=MODEL,
            started_at=datetime(2025, 6, 10, 9, tzinfo=UTC),
        )
    assert not Path(f"{path}-wal").exists()
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        yield path
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
        base.rmdir()


@pytest.mark.parametrize("command", [["daily", "--no-import", "--json"], ["runs", "--json"]])
def test_reports_read_a_read_only_ledger(read_only_ledger: Path, command: list[str]) -> None:
    home = read_only_ledger.parent.parent  # writable by no one but root: nothing goes there
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": SRC}
    result = subprocess.run(
        [
            *_read_only_view(read_only_ledger.parent.parent),
            sys.executable,
            "-m",
            "llmledger",
            *command,
            "--db",
            f"sqlite:///{read_only_ledger}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if command[0] == "daily":
        [day] = orjson.loads(result.stdout)["rows"]
        assert day["input_tokens"] == 1000


def test_a_read_only_ledger_is_opened_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    open_repository(f"sqlite:///{path}").engine.dispose()
    engine = open_engine(f"sqlite:///{path}", read_only=True)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM calls").scalar() == 0
        with pytest.raises(Exception, match="readonly"), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO import_state (path, size) VALUES ('x', 1)")
    finally:
        engine.dispose()


def test_a_read_only_ledger_that_needs_a_migration_says_so(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    repo = open_repository(f"sqlite:///{path}")
    with repo.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    repo.engine.dispose()
    engine = open_engine(f"sqlite:///{path}", read_only=True)
    from llmledger.store import ensure_current

    with pytest.raises(StoreError, match=r"read-only.*0003"):
        ensure_current(engine)
    engine.dispose()


# -- 22: db repair ------------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _stale_run(repo: Any, started: datetime, parent: str | None = None) -> str:
    run_id = repo.create_run("task", parent_id=parent, started_at=started)
    with repo.engine.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(owner_pid=_dead_pid()))
    return run_id


def test_repair_finishes_a_run_at_its_last_call_or_leaves_it_open_ended(db_url: str) -> None:
    repo = open_repository(db_url)
    start = datetime(2025, 6, 10, 9, tzinfo=UTC)
    parent = _stale_run(repo, start)
    child = _stale_run(repo, start + timedelta(minutes=1), parent=parent)
    empty = _stale_run(repo, start)
    last = start + timedelta(minutes=7, seconds=30)
    repo.add_calls(
        [
            Call(Usage(input_tokens=1), source="t", dedupe_key="a", started_at=start),
            Call(
                Usage(input_tokens=2),
                source="t",
                dedupe_key="b",
                started_at=last - timedelta(seconds=3),
                finished_at=last,
            ),
        ],
        run_id=child,
    )
    _register_commands()
    result = CliRunner().invoke(app, ["db", "repair", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "3 stale run(s)" in result.output
    assert "no call recorded" in result.output
    for run_id in (parent, child):
        row = repo.get_run(run_id)
        assert row is not None
        assert row["status"] == "interrupted"
        assert row["finished_at"] == last
        assert row["duration_ms"] == int((last - row["started_at"]).total_seconds() * 1000)
    row = repo.get_run(empty)
    assert row is not None
    assert row["status"] == "interrupted"
    assert row["finished_at"] is None
    assert row["duration_ms"] is None
    assert "no call recorded" in row["metadata"]["finished_at_unknown"]
    repo.engine.dispose()


def test_a_finish_before_the_start_is_rejected(db_url: str) -> None:
    repo = open_repository(db_url)
    start = datetime(2025, 6, 10, 9, tzinfo=UTC)
    run_id = repo.create_run("task", started_at=start)
    with pytest.raises(UsageError, match="finished_at"):
        repo.finalize_run(run_id, "failed", finished_at=start - timedelta(seconds=1))
    row = repo.get_run(run_id)
    assert row is not None
    assert row["status"] == "running"
    # A run whose start lies ahead of this machine's clock ends with no duration, never < 0.
    ahead = repo.create_run("task", started_at=datetime.now(UTC) + timedelta(hours=1))
    repo.finalize_run(ahead, "succeeded")
    row = repo.get_run(ahead)
    assert row is not None
    assert row["duration_ms"] is None
    assert row["finished_at"] is not None
    with repo.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM runs WHERE duration_ms < 0").scalar() == 0
    repo.engine.dispose()


def test_repair_never_writes_a_negative_duration(db_url: str) -> None:
    repo = open_repository(db_url)
    start = datetime(2025, 6, 10, 9, tzinfo=UTC)
    run_id = _stale_run(repo, start)
    early = start - timedelta(hours=1)  # a call stamped before its run (another clock)
    repo.add_calls(
        [Call(Usage(input_tokens=1), source="t", dedupe_key="e", started_at=early)], run_id=run_id
    )
    assert repair_stale_runs(repo) == [run_id]
    row = repo.get_run(run_id)
    assert row is not None
    assert row["status"] == "interrupted"
    assert row["finished_at"] is None
    assert row["duration_ms"] is None
    assert "before the run started" in row["metadata"]["finished_at_unknown"]
    repo.engine.dispose()


# -- 23: what llmledger creates is private ------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_ledger_and_its_directories_are_private(tmp_path: Path, umask_022: None) -> None:
    existing = tmp_path / "mine"
    existing.mkdir(mode=0o755)
    path = existing / "a" / "b" / "ledger.db"
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.record(Usage(input_tokens=1, output_tokens=1), model=MODEL)
        assert _mode(path) == 0o600
        # SQLite gives its side files the database file's permissions.
        assert _mode(Path(f"{path}-wal")) == 0o600
        assert _mode(Path(f"{path}-shm")) == 0o600
    assert _mode(existing / "a") == 0o700
    assert _mode(existing / "a" / "b") == 0o700
    assert _mode(existing) == 0o755  # the user's own directory stays as it was


def test_an_existing_ledger_keeps_its_permissions(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "ledger.db"
    open_repository(f"sqlite:///{path}").engine.dispose()
    path.chmod(0o640)
    with Ledger(f"sqlite:///{path}") as ledger:
        ledger.record(Usage(input_tokens=1, output_tokens=1), model=MODEL)
    assert _mode(path) == 0o640


def test_plan_task_logs_are_private(
    tmp_path: Path, sqlite_url: str, umask_022: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = Path(__file__).with_name("fake_agent.py")
    monkeypatch.setenv("LLMLEDGER_CLAUDE_BIN", f"{sys.executable} {fake}")
    plan = {
        "name": "Private logs",
        "defaults": {"model": MODEL, "max_attempts": 1, "timeout": 60},
        "sections": [{"id": "s", "tasks": [{"id": "t1", "prompt": "task 1"}]}],
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    _register_commands()
    result = CliRunner().invoke(app, ["plan", "run", str(path), "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    logs = tmp_path / "logs"
    assert _mode(logs) == 0o700
    assert _mode(logs / "plan") == 0o700
    assert _mode(logs / "plan" / "task-t1.log") == 0o600


def test_a_ledger_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StoreError, match="cannot create the ledger"):
        open_repository(f"sqlite:///{tmp_path / 'a-file' / 'ledger.db'}")
