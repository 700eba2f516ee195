"""``llmledger import --to URL``: a machine's agent logs imported into a staging ledger and
sent to a server, incrementally and idempotently.

The sender is tested against an in-process fake of ``POST /v1/calls`` (httpx.MockTransport)
that stores each call once by its dedupe key, as the service does; the end-to-end tests run
the real service."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy

from llmledger.imports import ship
from llmledger.records import CallRecord, call_of_record, record_of_call
from server import ServerProcess

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
URL = "http://ledger.test:8787"


class FakeServer:
    """``POST /v1/calls`` of the service, in memory: each call stored once by dedupe key, a
    larger copy replacing a smaller one; ``fail`` makes the next requests fail."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, Any]] = []
        #: Called with each request before it is served: may return a response instead.
        self.intercept: Callable[[httpx.Request], httpx.Response | None] | None = None
        self.reject: Callable[[dict[str, Any]], str | None] = lambda record: None
        self.lock = threading.RLock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:  # the sender has several batches on the wire
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if self.intercept is not None:
            early = self.intercept(request)
            if early is not None:
                return early
        assert (request.method, request.url.path) == ("POST", "/v1/calls")
        body = orjson.loads(request.content)
        self.posts.append(body)
        accepted = duplicates = 0
        rejected = []
        for index, item in enumerate(body["items"]):
            error = self.reject(item["call"])
            if error is not None:
                rejected.append({"index": index, "error": error})
                continue
            record = CallRecord.model_validate(item["call"])
            call = call_of_record(record)
            # What is sent is the canonical JSON of the call it describes.
            assert record_of_call(call) == item["call"]
            key = call.key()
            stored = self.calls.get(key)
            tokens = call.usage.total_tokens or 0
            if stored is None or tokens > stored["tokens"]:
                self.calls[key] = {"tokens": tokens, "record": item["call"]}
                accepted += 1
            else:
                duplicates += 1
        answer = {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
        return httpx.Response(200, json={**answer, "calls": []})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def tokens(self) -> int:
        return sum(c["tokens"] for c in self.calls.values())


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine whose only agent logs are a copy of tests/fixtures/claude-home; its staging
    directory is ``<returned>/staging``."""
    home = tmp_path / "machine"
    shutil.copytree(FIXTURES / "claude-home", home / "claude")
    for name in ("CODEX_HOME", "GEMINI_DATA_DIR"):
        (home / name).mkdir(parents=True)
        monkeypatch.setenv(name, str(home / name))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home / "claude"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv(ship.STAGING_ENV, str(home / "staging"))
    return home


def _run(server: FakeServer, **kwargs: Any) -> ship.SendSummary:
    _, sent = ship.import_to(
        URL, host="laptop", transport=server.transport(), first_wait=0.0, **kwargs
    )
    return sent


def _pending() -> int:
    return ship.pending_count(ship.staging_path(URL))


def test_sends_every_call_once_tagged_with_the_host(machine: Path) -> None:
    server = FakeServer()
    sent = _run(server)
    assert sent.sent == len(server.calls) > 0
    assert (sent.accepted, sent.duplicates, sent.rejected, sent.pending) == (sent.sent, 0, 0, 0)
    assert all(post["host"] == "laptop" for post in server.posts)
    assert all(c["record"]["host"] == "laptop" for c in server.calls.values())
    # Nothing new: nothing is posted at all.
    again = _run(server)
    assert (again.sent, again.batches) == (0, 0)
    assert len(server.posts) == 1


def test_a_reported_cost_stays_reported_and_computed_costs_are_left_to_the_server(
    machine: Path,
) -> None:
    server = FakeServer()
    _run(server)
    reported = {
        key: Decimal(c["record"]["reported_cost_usd"])
        for key, c in server.calls.items()
        if "reported_cost_usd" in c["record"]
    }
    assert reported == {"msg_B3:req_B3": Decimal("0.0123")}
    # The staging ledger's own computation is not sent: the server prices with its prices.
    assert not any(
        "computed_cost_pico" in c["record"].get("metadata", {}) for c in server.calls.values()
    )


def test_batches_hold_at_most_the_batch_size(machine: Path) -> None:
    server = FakeServer()
    path = ship.staging_path(URL)
    ship.import_to(URL, host="laptop", transport=FakeServer().transport(), first_wait=0.0)
    _mark_all_pending(path)
    seen: list[tuple[int, int]] = []
    sent = ship.send_pending(
        path,
        URL,
        host="laptop",
        transport=server.transport(),
        batch_size=2,
        first_wait=0.0,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert [len(p["items"]) for p in server.posts][:-1] == [2] * (len(server.posts) - 1)
    assert seen[-1] == (len(server.calls), len(server.calls))
    assert (sent.batches, sent.sent) == (len(server.posts), len(server.calls))


def test_server_down_marks_nothing_sent_and_the_next_run_sends_it(machine: Path) -> None:
    server = FakeServer()
    attempts = []

    def down(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    server.intercept = down
    with pytest.raises(ship.SendError, match="cannot reach") as caught:
        _run(server)
    assert len(attempts) == 4  # tried again, then gave up
    assert caught.value.summary is not None
    assert caught.value.summary.sent == 0
    waiting = _pending()
    assert waiting > 0
    server.intercept = None
    sent = _run(server)
    assert sent.sent == waiting == len(server.calls)
    assert _pending() == 0


def test_a_send_cut_off_mid_way_resends_only_the_unacknowledged_batches(machine: Path) -> None:
    path = ship.staging_path(URL)
    ship.import_to(URL, host="laptop", transport=FakeServer().transport(), first_wait=0.0)
    _mark_all_pending(path)
    total = _pending()
    server = FakeServer()

    def second_batch_fails(request: httpx.Request) -> httpx.Response | None:
        if len(server.posts) == 1:
            return httpx.Response(
                503, json={"detail": "store unreachable"}, headers={"Retry-After": "0"}
            )
        return None

    server.intercept = second_batch_fails
    with pytest.raises(ship.SendError, match="503"):
        ship.send_pending(
            path, URL, transport=server.transport(), batch_size=2, concurrency=1, first_wait=0.0
        )
    assert _pending() == total - 2
    server.intercept = None
    sent = ship.send_pending(path, URL, transport=server.transport(), batch_size=2, first_wait=0.0)
    assert (sent.sent, sent.duplicates) == (total - 2, 0)
    assert len(server.calls) == total


def test_a_batch_the_server_stored_but_did_not_acknowledge_is_sent_again_and_not_doubled(
    machine: Path,
) -> None:
    server = FakeServer()

    def lost_answer(request: httpx.Request) -> httpx.Response | None:
        server.intercept = None
        server.handle(request)  # stored, but the answer never arrives
        raise httpx.ReadTimeout("timed out", request=request)

    server.intercept = lost_answer
    sent = _run(server)
    assert sent.sent == len(server.calls) == sent.duplicates
    assert _pending() == 0


def test_a_call_replaced_by_a_larger_copy_is_sent_again(machine: Path) -> None:
    server = FakeServer()
    _run(server)
    transcript = next((machine / "claude").rglob("22222222-*.jsonl"))
    line = orjson.loads(transcript.read_bytes().splitlines()[0])
    line["message"]["usage"]["output_tokens"] += 1000  # a later, larger copy of msg_B1
    with transcript.open("ab") as fh:
        fh.write(orjson.dumps(line) + b"\n")
    before = server.tokens()
    sent = _run(server)
    assert (sent.sent, sent.accepted) == (1, 1)
    assert server.posts[-1]["items"][0]["call"]["dedupe_key"] == "msg_B1:req_B1"
    assert server.tokens() == before + 1000


def test_a_new_line_sends_only_its_call(machine: Path) -> None:
    server = FakeServer()
    _run(server)
    transcript = next((machine / "claude").rglob("22222222-*.jsonl"))
    line = orjson.loads(transcript.read_bytes().splitlines()[0])
    line["message"]["id"] = "msg_new"
    with transcript.open("ab") as fh:
        fh.write(orjson.dumps(line) + b"\n")
    sent = _run(server)
    assert sent.sent == 1
    assert [i["call"]["dedupe_key"] for i in server.posts[-1]["items"]] == ["msg_new:req_B1"]


def test_rejected_calls_stay_staged_and_are_named(machine: Path) -> None:
    server = FakeServer()
    server.reject = lambda record: (
        "model: too long" if record.get("model", "").startswith("claude-opus") else None
    )
    sent = _run(server)
    assert sent.pending == sent.rejected > 0
    assert sent.errors[0].startswith("call msg_")
    assert sent.errors[0].endswith(": model: too long")
    server.reject = lambda record: None
    again = _run(server)
    assert (again.sent, again.rejected, again.pending) == (sent.rejected, 0, 0)


def test_a_batch_too_large_for_the_server_is_split(machine: Path) -> None:
    server = FakeServer()

    def small_bodies(request: httpx.Request) -> httpx.Response | None:
        if len(orjson.loads(request.content)["items"]) > 1:
            return httpx.Response(413, json={"detail": "too large"})
        return None

    server.intercept = small_bodies
    sent = _run(server)
    assert sent.sent == len(server.calls) == sent.batches > 1
    assert _pending() == 0


@pytest.mark.parametrize(
    ("status", "says"),
    [(401, "--api-key"), (403, "ingest scope"), (404, "llmledger server")],
)
def test_a_refusal_stops_at_once_and_says_what_to_do(machine: Path, status: int, says: str) -> None:
    server = FakeServer()
    server.intercept = lambda request: httpx.Response(status, json={"detail": "no"})
    with pytest.raises(ship.SendError, match=says):
        _run(server)
    assert _pending() > 0


def test_the_key_is_sent_as_a_bearer_token(machine: Path) -> None:
    server = FakeServer()
    seen: list[str | None] = []

    def note(request: httpx.Request) -> None:
        seen.append(request.headers.get("authorization"))

    server.intercept = note
    _run(server, api_key="llk_secret")
    assert seen == ["Bearer llk_secret"]


def test_lost_triggers_mark_every_call_pending_again(machine: Path) -> None:
    server = FakeServer()
    _run(server)
    path = ship.staging_path(URL)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER ship_pending_update")  # as a migration rebuilding calls would
    sent = _run(server)
    assert sent.sent == sent.duplicates == len(server.calls)


def test_each_server_has_its_own_staging_ledger(machine: Path, tmp_path: Path) -> None:
    one, two = ship.staging_path(URL), ship.staging_path("http://other:8787/")
    assert one != two
    assert one.parent == two.parent == machine / "staging"
    assert ship.staging_path(URL + "/") == one
    assert ship.staging_path(URL, tmp_path).parent == tmp_path
    with pytest.raises(ValueError, match="not a server URL"):
        ship.staging_path("postgresql://x/y")


def _mark_all_pending(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT OR IGNORE INTO ship_pending (call_id) SELECT id FROM calls")


def test_codex_and_gemini_calls_are_sent_too(
    machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEX_HOME", str(EXAMPLES / "codex-home"))
    monkeypatch.setenv("GEMINI_DATA_DIR", str(EXAMPLES / "gemini-home" / "tmp"))
    server = FakeServer()
    _, sent = ship.import_to(URL, host="laptop", transport=server.transport(), first_wait=0.0)
    sources = {c["record"]["source"] for c in server.calls.values()}
    assert len(sources) == 3
    assert sent.sent == len(server.calls) == _staged_calls()


def _staged_calls() -> int:
    with sqlite3.connect(ship.staging_path(URL)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


# -- end to end: the CLI, two machines, the real service -------------------------------------

_RENAMED = {
    "11111111-aaaa-4aaa-8aaa-111111111111": "33333333-cccc-4ccc-8ccc-333333333333",
    "22222222-bbbb-4bbb-8bbb-222222222222": "44444444-dddd-4ddd-8ddd-444444444444",
    '"id":"msg_': '"id":"msgB_',
    '"requestId":"req_': '"requestId":"reqB_',
}


def _second_machine(root: Path) -> dict[str, str]:
    """Another machine's logs: Codex and Gemini CLI examples, and Claude Code transcripts
    like the fixture's but of other sessions and messages."""
    claude = root / "claude"
    for source in (FIXTURES / "claude-home" / "projects").rglob("*.jsonl"):
        text, name = source.read_text(), source.name
        for old, new in _RENAMED.items():
            text, name = text.replace(old, new), name.replace(old, new)
        target = claude / "projects" / source.parent.name / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return {
        "CLAUDE_CONFIG_DIR": str(claude),
        "CODEX_HOME": str(EXAMPLES / "codex-home"),
        "GEMINI_DATA_DIR": str(EXAMPLES / "gemini-home" / "tmp"),
        "HOME": str(root),
        "LLMLEDGER_STAGING_DIR": str(root / "staging"),
    }


def _first_machine(root: Path) -> dict[str, str]:
    shutil.copytree(FIXTURES / "claude-home", root / "claude")
    (root / "none").mkdir()
    return {
        "CLAUDE_CONFIG_DIR": str(root / "claude"),
        "CODEX_HOME": str(root / "none"),
        "GEMINI_DATA_DIR": str(root / "none"),
        "HOME": str(root),
        "LLMLEDGER_STAGING_DIR": str(root / "staging"),
    }


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLMLEDGER_")}
    return subprocess.run(
        [sys.executable, "-m", "llmledger", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _totals(document: dict[str, Any]) -> dict[str, Any]:
    totals = document["totals"]
    return {k: totals[k] for k in ("calls", "total_tokens", "input_tokens", "output_tokens")} | {
        "cost_usd": pytest.approx(totals["cost_usd"], rel=1e-12)
    }


def _local_daily(env: dict[str, str], url: str) -> dict[str, Any]:
    staged = f"sqlite:///{ship.staging_path(url, env['LLMLEDGER_STAGING_DIR'])}"
    result = _cli(["daily", "--db", staged, "--no-import", "--json"], env)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = orjson.loads(result.stdout)
    return document


@pytest.mark.slow
def test_two_machines_add_up_on_one_server_and_rerunning_changes_nothing(
    db_url: str, tmp_path: Path
) -> None:
    alpha = _first_machine(tmp_path / "alpha")
    beta = _second_machine(tmp_path / "beta")
    with ServerProcess(db_url, log=tmp_path / "server.log") as server:
        for env, host in ((alpha, "alpha"), (beta, "beta")):
            result = _cli(["import", "--to", server.url, "--host", host], env)
            assert result.returncode == 0, result.stderr
            assert f"as host {host}" in result.stdout
        local = {"alpha": _local_daily(alpha, server.url), "beta": _local_daily(beta, server.url)}
        daily = httpx.get(server.url + "/v1/reports/daily").json()
        assert daily["totals"]["calls"] == sum(d["totals"]["calls"] for d in local.values())
        for name in ("total_tokens", "input_tokens", "output_tokens", "cache_read_tokens"):
            assert daily["totals"][name] == sum(d["totals"][name] for d in local.values())
        assert daily["totals"]["cost_usd"] == pytest.approx(
            sum(d["totals"]["cost_usd"] for d in local.values()), rel=1e-12
        )
        # Each call carries its machine: the host filter gives each machine's own totals.
        for host, document in local.items():
            cli = _cli(["daily", "--db", db_url, "--host", host, "--no-import", "--json"], {})
            assert cli.returncode == 0, cli.stderr
            assert _totals(orjson.loads(cli.stdout)) == _totals(document)
        stored = _server_calls(db_url)
        assert stored["hosts"] == {h: d["totals"]["calls"] for h, d in local.items()}
        # The cost Claude Code logged stays the reported cost on the server.
        assert stored["msg_B3:req_B3"] == ("reported", Decimal("0.0123"))
        # Again, both: nothing is sent, the server's books do not move.
        for env in (alpha, beta):
            result = _cli(["import", "--to", server.url, "--json"], env)
            assert result.returncode == 0, result.stderr
            assert orjson.loads(result.stdout)["sent"]["sent"] == 0
        assert httpx.get(server.url + "/v1/reports/daily").json() == daily


def _server_calls(db_url: str) -> dict[str, Any]:
    """The server ledger's calls per host, and the cost of the call logged with a cost."""
    from llmledger.store import open_repository
    from llmledger.store.schema import calls

    repo = open_repository(db_url)
    try:
        with repo.engine.connect() as conn:
            hosts = conn.execute(
                sqlalchemy.select(calls.c.host, sqlalchemy.func.count()).group_by(calls.c.host)
            ).all()
            cost = conn.execute(
                sqlalchemy.select(calls.c.cost_status, calls.c.cost_usd).where(
                    calls.c.dedupe_key == "msg_B3:req_B3"
                )
            ).one()
    finally:
        repo.engine.dispose()
    return {"hosts": {host: count for host, count in hosts}, "msg_B3:req_B3": tuple(cost)}


@pytest.mark.slow
def test_the_service_reports_each_machine_by_host(sqlite_url: str, tmp_path: Path) -> None:
    alpha = _first_machine(tmp_path / "alpha")
    beta = _second_machine(tmp_path / "beta")
    with ServerProcess(sqlite_url, log=tmp_path / "server.log") as server:
        for env, host in ((alpha, "alpha"), (beta, "beta")):
            assert _cli(["import", "--to", server.url, "--host", host], env).returncode == 0
        for env, host in ((alpha, "alpha"), (beta, "beta")):
            one = httpx.get(server.url + "/v1/reports/daily", params={"host": host}).json()
            assert _totals(one) == _totals(_local_daily(env, server.url))


@pytest.mark.slow
def test_a_server_that_is_down_gets_the_calls_at_the_next_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = _first_machine(tmp_path / "alpha")
    server = ServerProcess(sqlite_url, log=tmp_path / "server.log")
    down = _cli(["import", "--to", server.url], env)
    assert down.returncode == 1
    assert "cannot reach" in down.stderr
    assert "7 still to send" in down.stderr
    with server:
        # LLMLEDGER_DB naming the server does what --to does.
        up = _cli(["import", "--json"], {**env, "LLMLEDGER_DB": server.url})
        assert up.returncode == 0, up.stderr
        sent = orjson.loads(up.stdout)["sent"]
        assert (sent["sent"], sent["accepted"], sent["pending"]) == (7, 7, 0)
        assert httpx.get(server.url + "/v1/reports/daily").json()["totals"]["calls"] == 7


@pytest.mark.slow
def test_a_server_with_keys_wants_an_ingest_key(sqlite_url: str, tmp_path: Path) -> None:
    env = _first_machine(tmp_path / "alpha")
    made = _cli(["keys", "create", "laptop", "--scope", "ingest", "--db", sqlite_url], {})
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with ServerProcess(sqlite_url, auth=True, log=tmp_path / "server.log") as server:
        refused = _cli(["import", "--to", server.url], env)
        assert refused.returncode == 1
        assert "--api-key" in refused.stderr
        sent = _cli(["import", "--to", server.url, "--json"], {**env, "LLMLEDGER_API_KEY": key})
        assert sent.returncode == 0, sent.stderr
        assert orjson.loads(sent.stdout)["sent"]["accepted"] == 7


def test_batches_on_the_wire_together_are_each_marked_once_acknowledged(machine: Path) -> None:
    path = ship.staging_path(URL)
    ship.import_to(URL, host="laptop", transport=FakeServer().transport(), first_wait=0.0)
    _mark_all_pending(path)
    total = _pending()
    server = FakeServer()

    def refuse_msg_b2(request: httpx.Request) -> httpx.Response | None:
        keys = [item["call"]["dedupe_key"] for item in orjson.loads(request.content)["items"]]
        return httpx.Response(502) if keys == ["msg_B2:req_B2"] else None

    server.intercept = refuse_msg_b2
    with pytest.raises(ship.SendError, match="502"):
        ship.send_pending(
            path, URL, transport=server.transport(), batch_size=1, concurrency=4, first_wait=0.0
        )
    # Whatever else was on the wire or sent before the failure is marked; the rest waits.
    assert "msg_B2:req_B2" not in server.calls
    assert _pending() == total - len(server.calls)
    server.intercept = None
    sent = ship.send_pending(
        path, URL, transport=server.transport(), batch_size=1, concurrency=4, first_wait=0.0
    )
    assert sent.duplicates == 0
    assert len(server.calls) == total
    assert _pending() == 0


def test_the_cli_names_what_is_wrong_with_its_options(tmp_path: Path) -> None:
    env = _first_machine(tmp_path / "alpha")
    bad_url = _cli(["import", "--to", "ftp://example.org"], env)
    assert bad_url.returncode == 2
    assert "not a server URL" in bad_url.stderr
    host_alone = _cli(["import", "--host", "laptop", "--db", f"sqlite:///{tmp_path / 'l.db'}"], env)
    assert host_alone.returncode == 2
    assert "--to" in host_alone.stderr
