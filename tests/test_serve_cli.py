"""``llmledger serve``: a real uvicorn that answers /healthz with the store's revision; a
non-loopback bind refused while no key exists (unless --no-auth, said loudly)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.keys import create_key
from llmledger.store import HEAD_REVISION, open_repository

_register_commands(["serve"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "llmledger", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def _wait_healthy(url: str, process: subprocess.Popen[bytes], deadline_s: float = 60) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"serve exited with {process.returncode}: {output}")
        try:
            response = httpx.get(f"{url}/healthz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail("serve did not answer /healthz in time")


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Servers a test started, stopped (by their pid) afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_healthz_with_the_revision(
    db_url: str, stop: list[subprocess.Popen[bytes]], workers: int
) -> None:
    port = _free_port()
    process = _serve("--port", str(port), "--db", db_url, "--workers", str(workers))
    stop.append(process)
    url = f"http://127.0.0.1:{port}"
    assert _wait_healthy(url, process) == {"status": "ok", "revision": HEAD_REVISION}
    # Batches posted at once (to every worker), each one twice: every call stored, once.
    batches = [
        {
            "items": [
                {"call": {"dedupe_key": f"{b}-{i}", "usage": {"input_tokens": 3}}}
                for i in range(50)
            ]
        }
        for b in range(8)
    ] * 2

    def post(body: dict[str, Any]) -> int:
        answer = httpx.post(f"{url}/v1/calls", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["accepted"])

    with ThreadPoolExecutor(8) as pool:
        accepted = sum(pool.map(post, batches))
    assert accepted == 400
    repo = open_repository(db_url)
    try:
        assert repo.counts()["calls"] == 400
    finally:
        repo.engine.dispose()
    process.terminate()
    # uvicorn shuts down, then re-raises the SIGTERM it caught (a single worker does).
    assert process.wait(30) in (0, -15)
    output = process.stdout.read().decode() if process.stdout else ""
    assert "requests to 127.0.0.1" in output
    assert "not checked" in output


def test_every_worker_reports_the_whole_servers_own_counters(
    sqlite_url: str, stop: list[subprocess.Popen[bytes]]
) -> None:
    port = _free_port()
    process = _serve("--port", str(port), "--db", sqlite_url, "--workers", "2")
    stop.append(process)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, process)
    bad = {"items": [{"call": {"usage": {"input_tokens": -1}}}]}
    for _ in range(20):  # a new connection each: the workers share them
        assert httpx.post(f"{url}/v1/calls", json=bad, timeout=30).json()["accepted"] == 0
    failures = re.compile(r'^llmledger_ingest_failures_total\{reason="call"\} (\S+)$', re.M)
    seen = set()
    for _ in range(10):  # whichever worker answers
        (value,) = failures.findall(httpx.get(f"{url}/metrics", timeout=30).text)
        seen.add(float(value))
    assert seen == {20.0}


def test_serve_with_a_key_checks_requests(
    sqlite_url: str, stop: list[subprocess.Popen[bytes]]
) -> None:
    repo = open_repository(sqlite_url)
    key = create_key(repo, "ci", "ingest")
    repo.engine.dispose()
    port = _free_port()
    # An LLMLEDGER_NO_AUTH left in the environment does not turn the checks off.
    process = _serve("--port", str(port), "--db", sqlite_url, env={"LLMLEDGER_NO_AUTH": "1"})
    stop.append(process)
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url, process)
    assert httpx.post(f"{url}/v1/runs", json={"kind": "task"}).status_code == 401
    authorized = {"Authorization": f"Bearer {key}"}
    assert httpx.post(f"{url}/v1/runs", json={"kind": "task"}, headers=authorized).is_success


def test_a_non_loopback_bind_without_keys_is_refused(sqlite_url: str) -> None:
    # Refused before anything listens: the command exits at once.
    result = subprocess.run(
        [sys.executable, "-m", "llmledger", "serve", "--host", "0.0.0.0", "--db", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0" in result.stderr
    assert "llmledger keys create" in result.stderr
    assert "--no-auth" in result.stderr


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("::", True),
        ("192.0.2.7", True),
        ("ledger.example", True),
        ("localhost", False),
        ("::1", False),
        ("127.0.0.2", False),
    ],
)
def test_which_addresses_are_loopback(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, host: str, refused: bool
) -> None:
    seen = _captured_run(monkeypatch)
    result = CliRunner().invoke(
        app, ["serve", "--host", host, "--db", sqlite_url], catch_exceptions=False
    )
    assert result.exit_code == (2 if refused else 0), result.output
    assert bool(seen) is not refused


def _captured_run(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: str, **kwargs: Any) -> None:
        seen.update(kwargs, app=app, env=dict(os.environ))

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.delenv("LLMLEDGER_DB", raising=False)
    monkeypatch.delenv("LLMLEDGER_NO_AUTH", raising=False)
    return seen


def test_no_auth_on_a_public_address_starts_and_says_so_loudly(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _captured_run(monkeypatch)
    result = CliRunner().invoke(
        app,
        ["serve", "--host", "0.0.0.0", "--port", "9999", "--workers", "3", "--db", sqlite_url],
        catch_exceptions=False,
    )
    assert result.exit_code == 2  # no keys: refused
    assert not seen
    result = CliRunner().invoke(
        app,
        ["serve", "--host", "0.0.0.0", "--workers", "3", "--db", sqlite_url, "--no-auth"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "WARNING: --no-auth" in result.output
    assert seen["app"] == "llmledger.api.app:app_from_env"
    assert seen["factory"] is True
    assert (seen["host"], seen["port"], seen["workers"]) == ("0.0.0.0", 8787, 3)
    assert seen["env"]["LLMLEDGER_DB"] == sqlite_url
    assert seen["env"]["LLMLEDGER_NO_AUTH"] == "1"


def test_a_public_address_with_a_key_starts(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = open_repository(sqlite_url)
    create_key(repo, "ci", "ingest")
    repo.engine.dispose()
    seen = _captured_run(monkeypatch)
    result = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--db", sqlite_url], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "WARNING" not in result.output
    assert "not checked" not in result.output
    assert seen["env"]["LLMLEDGER_NO_AUTH"] == "0"


def test_an_unreachable_store_stops_serve(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/test"
    result = CliRunner().invoke(app, ["serve", "--db", url], catch_exceptions=False)
    assert result.exit_code == 2
    assert "error:" in result.output


@pytest.mark.parametrize("command", [["daily", "--no-import"], ["runs"], ["show", "1.1"]])
def test_a_read_pointed_at_the_service_says_where_to_read(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """LLMLEDGER_DB=http://... is right for writers; a report given it must say so and name
    what to use instead, not fail on an 'unsupported database'."""
    _register_commands(command[:1])
    monkeypatch.setenv("LLMLEDGER_DB", "http://127.0.0.1:8787")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    assert "is a llmledger service, not a database" in result.output
    assert "GET /v1/reports/daily" in result.output
