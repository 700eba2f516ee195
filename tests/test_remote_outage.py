"""Nothing lost, nothing doubled: a remote ledger's calls survive a server that is down or
restarted and a writer killed with SIGKILL; the next process drains the spool and the server
holds each call exactly once. A real server (tests/server.py) and real child processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import ServerProcess, free_port

pytestmark = pytest.mark.slow

N = 1000

# A writer process: records calls under one run, says so on stdout, then waits to be killed
# (or, with "close", finishes its run and drains its spool like a program that exits).
_WRITER = """
import sys, time
from llmledger import Ledger
from llmledger.usage import Usage

url, spool, n, batch, pace, end, first = sys.argv[1:8]
ledger = Ledger(url, spool=spool, batch_size=int(batch), flush_interval=0.05, close_timeout=120)
with ledger.run("task", key="outage-" + first) as run:
    print(run.id, flush=True)
    for i in range(int(first), int(first) + int(n)):
        ledger.record(Usage(input_tokens=i, output_tokens=1), model="gpt-4o")
        if float(pace):
            time.sleep(float(pace))  # a workload that records over time
    print("recorded", flush=True)
    if end == "wait":
        sys.stdin.readline()  # killed here
ledger.close()
print("closed", ledger.failures, flush=True)
"""


def _writer(
    server: ServerProcess,
    spool: Path,
    *,
    n: int = N,
    batch: int = 500,
    pace: float = 0.0,
    end: str = "wait",
    first: int = 1,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WRITER,
            server.url,
            str(spool),
            str(n),
            str(batch),
            str(pace),
            end,
            str(first),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _kill(writer: subprocess.Popen[str]) -> None:
    os.kill(writer.pid, signal.SIGKILL)
    writer.communicate(timeout=30)  # reaps it and closes its pipes


def _flush(server: ServerProcess, spool: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "llmledger",
            "spool",
            "flush",
            "--db",
            server.url,
            "--spool",
            str(spool),
            "--timeout",
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _calls(db_file: Path) -> tuple[int, int, int]:
    """Calls on the server: how many, how many distinct keys, the sum of their input tokens."""
    with sqlite3.connect(db_file) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT dedupe_key), coalesce(sum(input_tokens), 0) FROM calls"
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def _wait_for(condition: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        time.sleep(0.01)


def _expected_tokens(first: int = 1, n: int = N) -> int:
    return sum(range(first, first + n))


@pytest.fixture
def server_db(tmp_path: Path) -> Path:
    return tmp_path / "server.db"


@pytest.fixture
def server(server_db: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(f"sqlite:///{server_db}", port=free_port(), log=tmp_path / "server.log")
    yield process
    process.stop()


def test_server_down_writer_killed_next_process_drains(
    server: ServerProcess, server_db: Path, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.db"
    writer = _writer(server, spool)  # the server is not started: down
    assert writer.stdout is not None
    run_id = writer.stdout.readline().strip()
    assert writer.stdout.readline().strip() == "recorded"
    _kill(writer)
    assert writer.returncode == -signal.SIGKILL

    server.start()
    status = subprocess.run(
        [sys.executable, "-m", "llmledger", "spool", "status", "--spool", str(spool), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"pending": 1001' in status.stdout  # the run and its 1,000 calls
    done = _flush(server, spool)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _calls(server_db) == (N, N, _expected_tokens())
    with sqlite3.connect(server_db) as conn:
        assert (
            conn.execute("SELECT count(*) FROM calls WHERE run_id = ?", (run_id,)).fetchone()[0]
            == N
        )
        assert conn.execute("SELECT count(DISTINCT host) FROM calls").fetchone()[0] == 1
    again = _flush(server, spool)
    assert again.returncode == 0
    assert "nothing to send" in again.stdout
    assert _calls(server_db) == (N, N, _expected_tokens())


@pytest.mark.parametrize("writer_survives", [True, False], ids=["writer-drains", "writer-killed"])
def test_server_restarted_mid_batch(
    server: ServerProcess, server_db: Path, tmp_path: Path, writer_survives: bool
) -> None:
    spool = tmp_path / "spool.db"
    server.start()
    # Batches of at most 25 calls, every 50 ms while the writer records for ~2 s: the
    # server is killed while calls are on their way.
    writer = _writer(
        server, spool, batch=25, pace=0.002, end="close" if writer_survives else "wait"
    )
    assert writer.stdout is not None
    writer.stdout.readline()
    _wait_for(lambda: _calls(server_db)[0] >= 100)
    server.kill()
    stored_at_kill = _calls(server_db)[0]
    assert 0 < stored_at_kill < N, "the server must go down while calls are being sent"
    server.start()
    if writer_survives:
        # Its sender retries with backoff and close() drains the rest.
        out, _ = writer.communicate(timeout=180)
        assert out.split()[-3:] == ["recorded", "closed", "0"] or out.strip().endswith("closed 0")
    else:
        assert writer.stdout.readline().strip() == "recorded"
        _kill(writer)
        done = _flush(server, spool)
        assert done.returncode == 0, done.stdout + done.stderr
    assert _calls(server_db) == (N, N, _expected_tokens())


def test_several_processes_share_one_spool(
    server: ServerProcess, server_db: Path, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.db"
    server.start()
    writers = [
        _writer(server, spool, n=300, batch=50, end="close", first=1 + k * 300) for k in range(3)
    ]
    for writer in writers:
        out, _ = writer.communicate(timeout=180)
        assert out.strip().endswith("closed 0"), out
    assert _calls(server_db) == (900, 900, _expected_tokens(1, 900))
    with sqlite3.connect(server_db) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
    assert statuses == [("succeeded", 3)]


_EXITS = """
import sys
from llmledger import Ledger
from llmledger.usage import Usage

ledger = Ledger(sys.argv[1], spool=sys.argv[2])
for i in range(1, 101):
    ledger.record(Usage(input_tokens=i), model="gpt-4o")
# No flush(), no close(): interpreter exit drains the spool.
"""

_FORKS = """
import os, sys
from llmledger import Ledger
from llmledger.usage import Usage

ledger = Ledger(sys.argv[1], spool=sys.argv[2])
ledger.record(Usage(input_tokens=1), model="gpt-4o")
pids = []
for k in range(3):
    pid = os.fork()
    if pid == 0:  # a worker forked with the ledger: it appends to the same spool
        for i in range(50):
            ledger.record(Usage(input_tokens=2 + k * 50 + i), model="gpt-4o")
        ok = ledger.flush(60)
        os._exit(0 if ok else 3)
    pids.append(pid)
codes = [os.waitpid(pid, 0)[1] for pid in pids]
ledger.close()
print("codes", *codes, "failures", ledger.failures)
"""


def test_interpreter_exit_drains_the_spool(
    server: ServerProcess, server_db: Path, tmp_path: Path
) -> None:
    server.start()
    done = subprocess.run(
        [sys.executable, "-c", _EXITS, server.url, str(tmp_path / "spool.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _calls(server_db) == (100, 100, _expected_tokens(1, 100))


def test_forked_workers_send_their_calls(
    server: ServerProcess, server_db: Path, tmp_path: Path
) -> None:
    server.start()
    done = subprocess.run(
        [sys.executable, "-c", _FORKS, server.url, str(tmp_path / "spool.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.split() == ["codes", "0", "0", "0", "failures", "0"], done.stderr
    assert _calls(server_db) == (151, 151, _expected_tokens(1, 151))
