"""Issue 13, the import's part: one poisoned line or file never stops an import or a report
(items 4 and 5), concurrent imports on PostgreSQL (item 17), and an import killed with its
workers alive (item 18)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmledger import Ledger
from llmledger.errors import ParseError, UsageError
from llmledger.imports import forget_in_children, import_logs
from llmledger.imports import read as read_module
from llmledger.imports.workers import POOL_THRESHOLD_BYTES
from llmledger.sources import parse
from llmledger.sources._common import Ctx, unix_seconds
from llmledger.sources.claude_transcript import transcript_call
from llmledger.store import Repository, open_repository
from llmledger.usage import MAX_TOKENS, Usage

PRICED = "claude-sonnet-4-20250514"
UNPRICED = "no-such-model-anywhere"


def line(
    msg_id: str,
    *,
    session: str = "s1",
    at: str = "2025-06-10T09:00:00.000Z",
    model: str = PRICED,
    inp: int = 10,
    out: int = 100,
    content: Any = None,
) -> dict[str, Any]:
    """A Claude Code assistant transcript line."""
    return {
        "type": "assistant",
        "sessionId": session,
        "cwd": "/home/dev/p",
        "timestamp": at,
        "requestId": f"req_{msg_id}",
        "message": {
            "id": msg_id,
            "model": model,
            "content": content if content is not None else [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": inp,
                "output_tokens": out,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
        },
    }


def nested(depth: int) -> bytes:
    """A usage line whose content is nested ``depth`` levels deep (valid JSON)."""
    head, tail = orjson.dumps(line("deep", content=[7])).split(b"[7]")
    return head + b"[" * depth + b"]" * depth + tail


def write(path: Path, lines: list[bytes | dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
    )
    return path


def poisoned_tree(home: Path) -> tuple[Path, Path]:
    """Two sessions' transcripts with good lines between poisoned ones."""
    first = write(
        home / "projects" / "-home-dev-p" / "s1.jsonl",
        [
            line("good1"),  # 1
            nested(1000),  # 2: deep, still a good call
            nested(2000),  # 3: too deep for any decoder
            line("big", inp=4 * 10**12),  # 4: overflows a cost
            line("y9999", at="9999-12-31T23:59:59Z"),  # 5
            line("y1969", at="1969-06-01T00:00:00Z"),  # 6
            line("good2", at="2025-06-11T09:00:00.000Z"),  # 7
        ],
    )
    second = write(
        home / "projects" / "-home-dev-p" / "s2.jsonl",
        [
            line("huge1", session="s2", model=UNPRICED, inp=5 * 10**18),  # 1
            line("huge2", session="s2", model=UNPRICED, inp=5 * 10**18),  # 2
            line("edge1", session="s2", model=UNPRICED, inp=MAX_TOKENS),  # 3: at the bound
            line("edge2", session="s2", inp=MAX_TOKENS, out=MAX_TOKENS),  # 4: at the bound, priced
        ],
    )
    return first, second


GOOD = {"good1", "deep", "good2", "edge1", "edge2"}


def _cli(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmledger", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- item 4: poisoned lines ----------------------------------------------------------------------


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repo = open_repository(db_url)
    yield repo
    repo.engine.dispose()


def test_poisoned_lines_are_skipped_and_named(repo: Repository, tmp_path: Path) -> None:
    first, second = poisoned_tree(tmp_path / "claude")
    summary = import_logs(repo, ["claude"], [tmp_path / "claude"], workers=1)
    assert summary.calls_added == len(GOOD)
    assert summary.lines_skipped == 6, summary.skipped
    named = {e.split(": ", 1)[0] for e in summary.errors}
    assert named == {f"{first}:{n}" for n in (3, 4, 5, 6)} | {f"{second}:{n}" for n in (1, 2)}
    reasons = " ".join(summary.errors)
    assert "input_tokens" in reasons
    assert "9999-12-31T23:59:59Z" in reasons
    assert "1969-06-01T00:00:00Z" in reasons
    with repo.engine.connect() as conn:
        ids = {r[0] for r in conn.exec_driver_sql("SELECT message_id FROM calls")}
        total = conn.exec_driver_sql("SELECT SUM(input_tokens) FROM call_rollup").scalar_one()
    assert ids == GOOD
    assert int(total) == 10 * 3 + 2 * MAX_TOKENS


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "America/Los_Angeles"])
def test_reports_run_after_poisoned_logs(db_url: str, tmp_path: Path, tz: str) -> None:
    poisoned_tree(tmp_path / "claude")
    env = {
        "LLMLEDGER_DB": db_url,
        "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
        "CODEX_HOME": str(tmp_path / "x"),
        "GEMINI_DATA_DIR": str(tmp_path / "x"),
    }
    for report in ("daily", "sessions"):
        done = _cli([report, "--json", "--tz", tz], env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["totals"]["calls"] == len(GOOD)
    done = _cli(["blocks", "--json", "--tz", tz], env)
    assert done.returncode == 0, done.stderr
    assert sum(b["calls"] for b in json.loads(done.stdout)["blocks"]) == len(GOOD)


def test_the_token_bound_is_shared_by_every_source_and_record(sqlite_url: str) -> None:
    assert MAX_TOKENS == 10**9
    assert Usage(input_tokens=MAX_TOKENS).input_tokens == MAX_TOKENS
    with pytest.raises(UsageError, match="input_tokens"):
        Usage(input_tokens=MAX_TOKENS + 1)
    response = {
        "id": "msg_1",
        "type": "message",
        "model": PRICED,
        "usage": {"input_tokens": 4 * 10**12, "output_tokens": 1},
    }
    with pytest.raises(ParseError, match="input_tokens"):
        parse(json.dumps(response).encode(), format="anthropic")
    ledger = Ledger(sqlite_url)
    assert ledger.record(response, format="anthropic") == []
    assert ledger.failures == 1
    ledger.close()


@pytest.mark.parametrize(
    ("stamp", "kept"),
    [
        ("2000-01-01T00:00:00Z", True),
        ("2099-12-31T23:59:59.999Z", True),
        ("1999-12-31T23:59:59Z", False),
        ("2100-01-01T00:00:00Z", False),
        ("0001-01-01T00:00:00+01:00", False),
    ],
)
def test_timestamps_outside_the_range_are_rejected(stamp: str, kept: bool) -> None:
    obj = {**line("m1"), "timestamp": stamp}
    if kept:
        call = transcript_call(obj, path="t.jsonl", line=3)
        assert call is not None
        assert call.started_at is not None
    else:
        with pytest.raises(ParseError, match=r"t\.jsonl:3.*timestamp"):
            transcript_call(obj, path="t.jsonl", line=3)


@pytest.mark.parametrize("seconds", [-1, 0, 946_684_799, 4_102_444_800, 10**12])
def test_unix_seconds_outside_the_range_are_rejected(seconds: int) -> None:
    with pytest.raises(ParseError, match="created"):
        unix_seconds(seconds, Ctx("openai_chat"), "created")
    assert unix_seconds(1_767_312_001, Ctx("openai_chat"), "created") is not None


def test_a_file_whose_read_fails_is_named_and_the_rest_imported(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "claude"
    bad = write(home / "projects" / "p" / "bad.jsonl", [line("a")])
    write(home / "projects" / "p" / "ok.jsonl", [line("b", session="s2")])
    read = read_module._read_transcript

    def failing(task: Any, *args: Any, **kwargs: Any) -> None:
        if task.path == str(bad):
            raise MemoryError("out of memory")
        read(task, *args, **kwargs)

    monkeypatch.setattr(read_module, "_read_transcript", failing)
    repo = open_repository(sqlite_url)
    summary = import_logs(repo, ["claude"], [home], workers=1)
    repo.engine.dispose()
    assert summary.calls_added == 1
    assert summary.skipped == {"unreadable file": 1}
    assert summary.errors[0].startswith(f"{bad}: ")
    assert "out of memory" in summary.errors[0]


# -- item 5: files that are not regular files ---------------------------------------------------


def test_named_pipes_and_sockets_are_skipped_not_read(tmp_path: Path) -> None:
    home = tmp_path / "c"
    project = home / "projects" / "p"
    write(project / "s1.jsonl", [line("good1")])
    os.mkfifo(project / "fifo.jsonl")
    (project / "dir.jsonl").mkdir()
    (project / "dir.jsonl" / "inner.jsonl").write_bytes(orjson.dumps(line("good2")) + b"\n")
    (project / "zero.jsonl").symlink_to("/dev/zero")
    listener = socket.socket(socket.AF_UNIX)
    sock = project / "sock.jsonl"
    if len(str(sock)) < 100:  # AF_UNIX paths are short
        listener.bind(str(sock))
    env = {
        "LLMLEDGER_DB": f"sqlite:///{tmp_path / 'l.db'}",
        "CLAUDE_CONFIG_DIR": str(home),
        "CODEX_HOME": str(tmp_path / "x"),
        "GEMINI_DATA_DIR": str(tmp_path / "x"),
    }
    try:
        done = _cli(["import", "claude", str(home), "--json"], env)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["calls_added"] == 2  # the file in the directory named *.jsonl too
        irregular = 3 if sock.exists() else 2
        assert summary["skipped"] == {"not a regular file": irregular}
        assert any(
            e.startswith(f"{project / 'fifo.jsonl'}: ") and "named pipe" in e
            for e in summary["errors"]
        )
        assert any("character device" in e for e in summary["errors"])
        report = _cli(["daily", "--json", "--tz", "UTC"], env)
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["totals"]["calls"] == 2
    finally:
        listener.close()


def test_a_file_replaced_by_a_pipe_after_planning_is_not_read(tmp_path: Path) -> None:
    # Discovery and planning saw a regular file; the read finds a pipe: it must not wait.
    path = tmp_path / "s.jsonl"
    os.mkfifo(path)
    code = (
        "from llmledger.imports.read import ReadTask, read_file;"
        f"r = read_file(ReadTask({str(path)!r}, 'claude', 100));"
        "print(r.failed)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "not a regular file (named pipe)" in done.stdout


# -- item 17: concurrent imports on PostgreSQL ---------------------------------------------------


SESSIONS = 100


def _concurrent_import(url: str, home: str, barrier: Any) -> None:
    repo = open_repository(url)
    barrier.wait(timeout=60)
    import_logs(repo, ["claude"], [home], workers=1)


def _many_sessions(home: Path, sessions: int = SESSIONS, calls: int = 100) -> set[str]:
    ids: set[str] = set()
    for s in range(sessions):
        lines = [line(f"m{s}-{i}", session=f"s{s}") for i in range(calls)]
        ids.update(f"m{s}-{i}" for i in range(calls))
        write(home / "projects" / f"p{s % 3}" / f"s{s}.jsonl", lines)
    return ids


@pytest.mark.postgres
def test_concurrent_imports_on_postgresql_all_succeed(pg_url: str, tmp_path: Path) -> None:
    home = tmp_path / "claude"
    expected = _many_sessions(home)
    open_repository(pg_url).engine.dispose()  # created and migrated once, as a CLI would
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(4)
    procs = [
        spawn.Process(target=_concurrent_import, args=(pg_url, str(home), barrier))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    repo = open_repository(pg_url)
    with repo.engine.connect() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT message_id FROM calls")]
        runs = [r[0] for r in conn.exec_driver_sql("SELECT key FROM runs WHERE kind = 'session'")]
        rolled = conn.exec_driver_sql("SELECT SUM(calls) FROM call_rollup").scalar_one()
    assert sorted(ids) == sorted(expected)
    assert sorted(runs) == sorted(f"s{s}" for s in range(SESSIONS))
    assert int(rolled) == len(expected)
    again = import_logs(repo, ["claude"], [home], workers=1)
    assert again.calls_added == 0
    repo.engine.dispose()


# -- item 18: an import killed with its workers alive -------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _big_tree(home: Path) -> None:
    filler = "x" * 2000
    per_file = 2000
    files = POOL_THRESHOLD_BYTES * 2 // (per_file * 2300) + 2
    for f in range(files):
        lines = [
            line(f"m{f}-{i}", session=f"s{f}", content=[{"type": "text", "text": filler}])
            for i in range(per_file)
        ]
        write(home / "projects" / "p" / f"s{f}.jsonl", lines)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.postgres
def test_workers_die_with_a_killed_import(pg_server: str, pg_url: str, tmp_path: Path) -> None:
    import sqlalchemy

    home = tmp_path / "claude"
    _big_tree(home)
    name = f"llmledger-killed-{os.getpid()}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "LLMLEDGER_DB": f"{pg_url}&application_name={name}",
        "CLAUDE_CONFIG_DIR": str(home),
        "CODEX_HOME": str(tmp_path / "x"),
        "GEMINI_DATA_DIR": str(tmp_path / "x"),
    }
    # The killed import has written calls in its open transaction: the next import's writes
    # of the same keys wait for that transaction to end.
    writing = sqlalchemy.text(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE a.application_name = :name AND l.mode = 'RowExclusiveLock' "
        "AND l.relation::regclass::text LIKE '%.calls'"
    )
    admin = sqlalchemy.create_engine(pg_server)
    command = [sys.executable, "-m", "llmledger", "import", "claude", "--json"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    try:
        with admin.connect() as conn:
            while time.monotonic() < deadline and first.poll() is None:
                workers = _children(first.pid)
                if len(workers) >= 2 and conn.execute(writing, {"name": name}).scalar_one():
                    break
                conn.rollback()
                time.sleep(0.01)  # polling, not timing: the deadline bounds the wait
        assert first.poll() is None, "the import ended before it was caught writing"
        assert len(workers) >= 2, "the import never started its workers"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(map(_alive, workers)), "workers outlived the killed import"
    finally:
        admin.dispose()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["calls_added"] > 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks")
@pytest.mark.postgres
def test_a_forked_worker_never_uses_the_parents_connection(pg_url: str) -> None:
    repo = open_repository(pg_url)
    forget_in_children(repo.engine)
    backend = "SELECT pg_backend_pid()"
    with repo.engine.connect() as conn:
        parent = conn.exec_driver_sql(backend).scalar_one()
    read, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        code = 1
        try:
            with repo.engine.connect() as conn:
                os.write(write_end, str(conn.exec_driver_sql(backend).scalar_one()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read) as fh:
        seen = fh.read()
    assert os.waitpid(child, 0)[1] == 0
    assert seen
    assert int(seen) != parent
    with repo.engine.connect() as conn:  # the parent's connection still works
        assert conn.exec_driver_sql(backend).scalar_one() == parent
    repo.engine.dispose()


def test_a_long_codex_session_past_the_bound_in_total_is_read(tmp_path: Path) -> None:
    # The bound is per call: a rollout's cumulative totals pass it in a long session.
    def event(at: str, total: int, last: int) -> dict[str, Any]:
        usage = {"input_tokens": total, "cached_input_tokens": total - 10, "output_tokens": 5}
        step = {"input_tokens": last, "cached_input_tokens": last - 10, "output_tokens": 5}
        info = {"total_token_usage": usage, "last_token_usage": step}
        return {
            "timestamp": at,
            "type": "event_msg",
            "payload": {"type": "token_count", "info": info},
        }

    meta = {
        "id": "019a5a3c-7e21-7d40-9b8a-2f4c6e8a0b99",
        "timestamp": "2025-11-06T18:00:00Z",
        "cwd": "/p",
    }
    rollout = write(
        tmp_path / "sessions" / "rollout-2025-11-06T18-00-00-x.jsonl",
        [
            {"timestamp": "2025-11-06T18:00:00Z", "type": "session_meta", "payload": meta},
            {
                "timestamp": "2025-11-06T18:00:01Z",
                "type": "turn_context",
                "payload": {"model": "gpt-5-codex", "cwd": "/p"},
            },
            event("2025-11-06T18:00:02Z", MAX_TOKENS - 100, 50_000),
            event("2025-11-06T18:00:03Z", MAX_TOKENS + 49_900, 50_000),
        ],
    )
    parsed = parse(rollout.read_bytes(), format="codex_rollout", path=rollout)
    assert len(parsed.calls) == 2
    assert parsed.calls[1].usage.cache_read_tokens == 50_000  # the difference of the totals


def test_values_the_database_refuses_skip_only_their_call(repo: Repository, tmp_path: Path) -> None:
    # PostgreSQL enforces the columns' lengths and refuses NUL characters: one such line
    # used to abort the import's transaction, and every report with it.
    home = tmp_path / "claude"
    long_id = "m" * 300
    write(
        home / "projects" / "p" / "s1.jsonl",
        [
            line("good1"),
            line(long_id),
            line("nul\x00id"),
            line("m4", model="y" * 250),
            {**line("m5"), "requestId": "q" * 300},
            line("good2", at="2025-06-11T09:00:00Z"),
        ],
    )
    summary = import_logs(repo, ["claude"], [home], workers=1)
    with repo.engine.connect() as conn:
        ids = {r[0] for r in conn.exec_driver_sql("SELECT message_id FROM calls")}
        rolled = conn.exec_driver_sql("SELECT SUM(calls) FROM call_rollup").scalar_one()
    assert {"good1", "good2"} <= ids
    assert int(rolled) == len(ids) == summary.calls_added
    if repo.engine.dialect.name == "postgresql":
        assert ids == {"good1", "good2"}
        assert summary.skipped == {"not stored": 4}
        assert any(long_id in e and "not stored" in e for e in summary.errors)


def test_a_nul_in_a_sessions_facts_does_not_stop_the_import(
    repo: Repository, tmp_path: Path
) -> None:
    home = tmp_path / "claude"
    write(home / "projects" / "p" / "s1.jsonl", [{**line("good1"), "cwd": "/home/\x00dev"}])
    write(home / "projects" / "p" / "s2.jsonl", [line("good2", session="s2")])
    summary = import_logs(repo, ["claude"], [home], workers=1)
    assert summary.calls_added >= 1
    with repo.engine.connect() as conn:
        ids = {r[0] for r in conn.exec_driver_sql("SELECT message_id FROM calls")}
    assert "good2" in ids


def test_costs_past_64_bits_in_one_bucket_stop_nothing(db_url: str, tmp_path: Path) -> None:
    # 14 calls at the bound of the dearest model in one 15-minute bucket: about $10.5M,
    # past the 64-bit pico-dollar sums of the roll-up.
    home = tmp_path / "claude"
    buckets = ("input", "output", "cache_read_input", "cache_creation_input")
    big = {f"{name}_tokens": MAX_TOKENS for name in buckets}
    lines = []
    for i in range(14):
        obj = line(f"m{i}", model="o1-pro")
        obj["message"]["usage"] = big
        lines.append(obj)
    write(home / "projects" / "p" / "s1.jsonl", [*lines, line("good", at="2025-06-12T09:00:00Z")])
    repo = open_repository(db_url)
    summary = import_logs(repo, ["claude"], [home], workers=1)
    repo.engine.dispose()
    assert summary.calls_added + summary.skipped.get("not stored", 0) == 15
    env = {
        "LLMLEDGER_DB": db_url,
        "CLAUDE_CONFIG_DIR": str(home),
        "CODEX_HOME": str(tmp_path / "x"),
        "GEMINI_DATA_DIR": str(tmp_path / "x"),
    }
    done = _cli(["daily", "--json", "--tz", "Asia/Kolkata", "--no-import"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["totals"]["calls"] == summary.calls_added


def test_otel_span_times_outside_the_range_are_rejected() -> None:
    span = {
        "name": "chat gpt-5",
        "startTimeUnixNano": "1000000000",
        "endTimeUnixNano": "3500000000",
        "attributes": {
            "gen_ai.response.model": "gpt-5",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 7,
        },
    }
    with pytest.raises(ParseError, match="outside the accepted range"):
        parse(span, format="otel_genai_span")


def test_a_nul_in_an_id_read_after_the_first_import_stops_nothing(
    repo: Repository, tmp_path: Path
) -> None:
    home = tmp_path / "claude"
    write(home / "projects" / "p" / "s1.jsonl", [line("good1")])
    assert import_logs(repo, ["claude"], [home], workers=1).calls_added == 1
    write(
        home / "projects" / "p" / "s2.jsonl",
        [line("nul\x00id", session="s2"), line("good2", session="s2")],
    )
    summary = import_logs(repo, ["claude"], [home], workers=1)
    assert summary.calls_added >= 1
    with repo.engine.connect() as conn:
        ids = {r[0] for r in conn.exec_driver_sql("SELECT message_id FROM calls")}
    assert {"good1", "good2"} <= ids


def test_a_nul_in_a_codex_session_id_stops_nothing(repo: Repository, tmp_path: Path) -> None:
    def rollout(name: str, session: str, tokens: int) -> Path:
        meta = {"id": session, "timestamp": "2025-11-06T18:00:00Z", "cwd": "/p"}
        usage = {"input_tokens": tokens, "cached_input_tokens": 10, "output_tokens": 5}
        return write(
            tmp_path / "sessions" / f"rollout-2025-11-06T18-00-00-{name}.jsonl",
            [
                {"timestamp": "2025-11-06T18:00:00Z", "type": "session_meta", "payload": meta},
                {
                    "timestamp": "2025-11-06T18:00:01Z",
                    "type": "turn_context",
                    "payload": {"model": "gpt-5-codex", "cwd": "/p"},
                },
                {
                    "timestamp": "2025-11-06T18:00:02Z",
                    "type": "event_msg",
                    "payload": {"type": "token_count", "info": {"total_token_usage": usage}},
                },
            ],
        )

    rollout("a", "good-session", 100)
    rollout("b", "bad\x00session", 200)
    import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    rollout("b", "bad\x00session", 300)  # read again: the import asks about its session
    import_logs(repo, ["codex"], [tmp_path / "sessions"], workers=1)
    with repo.engine.connect() as conn:
        sessions = {r[0] for r in conn.exec_driver_sql("SELECT session_id FROM calls")}
    assert "good-session" in sessions


def test_record_keeps_a_call_with_a_time_outside_the_range_without_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    # Stored, a year-9999 time broke daily/sessions/blocks in every zone east of UTC.
    ledger = Ledger(sqlite_url)
    for at in (datetime(9999, 12, 31, 23, tzinfo=UTC), "1969-07-20T20:17:00Z"):
        calls = ledger.record(Usage(input_tokens=5), model=PRICED, started_at=at)
        assert len(calls) == 1
        assert calls[0].started_at is None
        assert "bad_started_at" in calls[0].metadata["flags"]
    ledger.close()
    done = _cli(
        ["daily", "--json", "--tz", "Pacific/Kiritimati", "--no-import"],
        {"LLMLEDGER_DB": sqlite_url},
    )
    assert done.returncode == 0, done.stderr
