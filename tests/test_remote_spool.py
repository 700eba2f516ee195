"""The remote writer without a server: the spool (order, batches, surviving a reopen) and the
sender's answers to each kind of reply (httpx.MockTransport), and a remote Ledger's requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from llmledger import Ledger
from llmledger.remote import Sender, Spool
from llmledger.remote.sender import MAX_NOT_FOUND_TRIES
from llmledger.usage import Usage

Handler = Callable[[httpx.Request], httpx.Response]


class FakeService:
    """Records every request; answers 200/201 like the service unless ``answer`` says
    otherwise (return None from it to get the default)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        self.stored: list[str] = []
        self.answer: Callable[[httpx.Request, Any], httpx.Response | None] = lambda r, b: None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body: Any = orjson.loads(request.content) if request.content else None
        self.requests.append((request.url.raw_path.decode(), body))
        custom = self.answer(request, body)
        if custom is not None:
            return custom
        if request.url.path.endswith("/calls"):
            self.stored += [item["call"]["dedupe_key"] for item in body["items"]]
            n = len(body["items"])
            return httpx.Response(
                200, json={"accepted": n, "duplicates": 0, "rejected": [], "calls": []}
            )
        return httpx.Response(201, json={})

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def call_keys(self) -> list[str]:
        """The dedupe keys of the calls answered with the default 200, in order."""
        return self.stored


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    store = Spool(tmp_path / "spool.db", "http://ledger.test")
    yield store
    store.close()


_SENDERS: list[Sender] = []


@pytest.fixture(autouse=True)
def _stop_senders() -> Iterator[None]:
    yield
    while _SENDERS:
        _SENDERS.pop().stop()  # lets go of the send lock (an open file)


def _sender(spool: Spool, service: FakeService, **kwargs: Any) -> Sender:
    sender = Sender(
        "http://ledger.test", spool, transport=httpx.MockTransport(service), host="h1", **kwargs
    )
    _SENDERS.append(sender)
    return sender


def _call(key: str) -> bytes:
    return orjson.dumps({"usage": {"input_tokens": 1}, "dedupe_key": key})


def test_spool_keeps_order_and_survives_reopen(tmp_path: Path) -> None:
    first = Spool(tmp_path / "s.db", "http://ledger.test")
    first.append("run", "r1", [b'{"id":"r1","kind":"task"}'])
    first.append("call", "r1", [_call("a"), _call("b")])
    first.append("finish", "r1", [b'{"status":"succeeded"}'])
    first.close()
    again = Spool(tmp_path / "s.db")  # another process, later
    assert again.status().url == "http://ledger.test"
    assert again.pending() == 4
    assert [op.kind for op in again.next_batch(10)] == ["run"]
    again.close()


def test_batch_groups_a_runs_calls_and_stops_at_its_finish(spool: Spool) -> None:
    spool.append("call", "r1", [_call("a")])
    spool.append("call", "r2", [_call("x")])  # another run's call in between
    spool.append("call", "r1", [_call("b")])
    spool.append("finish", "r1", [b'{"status":"succeeded"}'])
    spool.append("call", "r1", [_call("late")])  # after the finish: not in the batch
    batch = spool.next_batch(500)
    assert [orjson.loads(op.body)["dedupe_key"] for op in batch] == ["a", "b"]
    assert [orjson.loads(op.body)["dedupe_key"] for op in spool.next_batch(1)] == ["a"]


def test_sender_sends_in_order_and_deletes_what_was_acknowledged(
    spool: Spool, service: FakeService
) -> None:
    spool.append("run", "r1", [b'{"id":"r1","kind":"task"}'])
    spool.append("call", "r1", [_call(f"k{i}") for i in range(7)])
    spool.append("status", "task/1", [b'{"id":"e1","to_status":"done"}'])
    spool.append("finish", "r1", [b'{"status":"succeeded"}'])
    sender = _sender(spool, service, batch_size=5)
    assert sender.send_pending(time.monotonic() + 10)
    assert service.paths() == [
        "/v1/runs",
        "/v1/runs/r1/calls",
        "/v1/runs/r1/calls",
        "/v1/tasks/task%2F1/status",
        "/v1/runs/r1/finish",
    ]
    assert service.call_keys() == [f"k{i}" for i in range(7)]
    assert service.requests[1][1]["host"] == "h1"
    assert spool.pending() == 0
    assert sender.sent == 10


def test_calls_without_a_run_go_to_v1_calls(spool: Spool, service: FakeService) -> None:
    spool.append("call", None, [_call("a")])
    _sender(spool, service).send_pending(time.monotonic() + 10)
    assert service.paths() == ["/v1/calls"]


def test_a_rejected_item_is_dead_lettered_and_the_rest_stored(
    spool: Spool, service: FakeService
) -> None:
    def reject_second(request: httpx.Request, body: Any) -> httpx.Response | None:
        n = len(body["items"])
        return httpx.Response(
            200,
            json={
                "accepted": n - 1,
                "duplicates": 0,
                "rejected": [{"index": 1, "error": "usage.input_tokens: too large"}],
                "calls": [],
            },
        )

    service.answer = reject_second
    spool.append("call", "r1", [_call("a"), _call("b"), _call("c")])
    dead: list[str] = []
    sender = _sender(spool, service, on_dead=lambda ops, status, error: dead.append(error))
    assert sender.step() == "sent"
    assert spool.pending() == 0
    [letter] = spool.dead_letters()
    assert orjson.loads(letter.body)["dedupe_key"] == "b"
    assert "too large" in letter.error
    assert dead == [letter.error]


def test_a_batch_refused_whole_is_split_so_only_the_bad_item_is_dead(
    spool: Spool, service: FakeService
) -> None:
    def refuse_b(request: httpx.Request, body: Any) -> httpx.Response | None:
        keys = [item["call"]["dedupe_key"] for item in body.get("items", [])]
        if "b" in keys:
            return httpx.Response(422, json={"detail": [{"loc": ["body", "items"]}]})
        return None

    service.answer = refuse_b
    spool.append("call", "r1", [_call(k) for k in "abcd"])
    spool.append("finish", "r1", [b'{"status":"succeeded"}'])
    assert _sender(spool, service).send_pending(time.monotonic() + 10)
    assert [orjson.loads(d.body)["dedupe_key"] for d in spool.dead_letters()] == ["b"]
    assert sorted(service.call_keys()) == ["a", "c", "d"]
    assert service.paths()[-1] == "/v1/runs/r1/finish"  # the bad item did not block the rest
    assert spool.requeue_dead() == 1
    assert spool.pending() == 1


def test_413_halves_the_batch(spool: Spool, service: FakeService) -> None:
    service.answer = lambda request, body: (
        httpx.Response(413, json={"detail": "too big"}) if len(body.get("items", [])) > 2 else None
    )
    spool.append("call", "r1", [_call(str(i)) for i in range(8)])
    assert _sender(spool, service).send_pending(time.monotonic() + 10)
    assert sorted(service.call_keys()) == [str(i) for i in range(8)]
    assert spool.dead_letters() == []


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(503, json={"detail": "store down"}, headers={"Retry-After": "7"}),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(401, json={"detail": "no key"}, headers={"Retry-After": "7"}),
    ],
    ids=["503", "429", "401"],
)
def test_retryable_answers_keep_the_ops_and_honour_retry_after(
    spool: Spool, service: FakeService, response: httpx.Response
) -> None:
    service.answer = lambda request, body: response
    spool.append("call", "r1", [_call("a")])
    sender = _sender(spool, service)
    before = time.monotonic()
    assert sender.step() == "retry"
    assert 6.5 <= sender._retry_at - before <= 7.5
    assert spool.pending() == 1
    assert spool.dead_letters() == []
    assert spool.status().last_error is not None
    assert str(response.status_code) in (spool.status().last_error or "")


def test_network_errors_back_off_exponentially(spool: Spool, service: FakeService) -> None:
    def down(request: httpx.Request, body: Any) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    service.answer = down
    spool.append("run", "r1", [b'{"id":"r1","kind":"task"}'])
    sender = _sender(spool, service)
    delays = []
    for _ in range(4):
        start = time.monotonic()
        assert sender.step() == "retry"
        delays.append(sender._retry_at - start)
    assert delays == sorted(delays)
    assert delays[-1] > 4 * delays[0] * 0.75
    assert spool.pending() == 1
    assert "ConnectError" in (sender.last_error or "")


def test_404_is_retried_then_dead_lettered(spool: Spool, service: FakeService) -> None:
    service.answer = lambda request, body: httpx.Response(404, json={"detail": "run_id: no run"})
    spool.append("finish", "gone", [b'{"status":"succeeded"}'])
    sender = _sender(spool, service)
    for _ in range(MAX_NOT_FOUND_TRIES - 1):
        assert sender.step() == "retry"
    assert sender.step() == "sent"
    assert spool.pending() == 0
    assert spool.dead_letters()[0].http_status == 404


def test_another_4xx_dead_letters_the_op(spool: Spool, service: FakeService) -> None:
    service.answer = lambda request, body: httpx.Response(409, json={"detail": "id: other kind"})
    spool.append("run", "r1", [b'{"id":"r1","kind":"task"}'])
    spool.append("run", "r2", [b'{"id":"r2","kind":"task"}'])
    assert _sender(spool, service).send_pending(time.monotonic() + 10)
    assert [d.http_status for d in spool.dead_letters()] == [409, 409]


# -- the remote Ledger ------------------------------------------------------------------


def _ledger(tmp_path: Path, service: FakeService, **kwargs: Any) -> Ledger:
    return Ledger(
        "http://ledger.test:8787",
        spool=tmp_path / "spool.db",
        _transport=httpx.MockTransport(service),
        **kwargs,
    )


def test_remote_ledger_sends_runs_calls_events_and_finish(
    tmp_path: Path, service: FakeService
) -> None:
    ledger = _ledger(tmp_path, service, api_key="llk_test")
    with ledger.run("plan", "p", key="plan-1", agent="claude") as plan:
        with plan.attempt() as attempt:
            calls = ledger.record(Usage(input_tokens=10, output_tokens=2), model="gpt-4o")
            response = {
                "id": "chatcmpl-9",
                "object": "chat.completion",
                "model": "gpt-4o",
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                "choices": [],
            }
            ledger.record(response)
        ledger.add_status_event("done", run=plan, from_status="running")
    assert ledger.flush(10)
    ledger.close()
    assert ledger.failures == 0
    assert calls[0].dedupe_key is not None
    assert calls[0].dedupe_key.startswith("rec:")
    # Consecutive posts of calls collapsed: how they are batched depends on timing.
    sent = service.paths()
    paths = [p for i, p in enumerate(sent) if not (p.endswith("/calls") and sent[i - 1] == p)]
    assert paths == [
        "/v1/runs",
        "/v1/runs",
        f"/v1/runs/{attempt.id}/calls",
        f"/v1/runs/{attempt.id}/finish",
        "/v1/tasks/plan-1/status",
        f"/v1/runs/{plan.id}/finish",
    ]
    run_body = service.requests[0][1]
    assert run_body["id"] == plan.id
    assert run_body["key"] == "plan-1"
    assert run_body["agent_id"] == "claude"
    assert run_body["host"]
    assert service.requests[1][1]["parent_id"] == plan.id
    assert service.requests[1][1]["attempt"] == 1
    keys = service.call_keys()
    assert keys == [calls[0].dedupe_key, "chatcmpl-9"]
    [event] = [body for path, body in service.requests if path.endswith("/status")]
    assert event["to_status"] == "done"
    assert event["run_id"] == plan.id
    assert len(event["id"]) == 32
    assert service.requests[-1][1]["status"] == "succeeded"


def test_record_never_waits_for_the_network(tmp_path: Path, service: FakeService) -> None:
    release = threading.Event()

    def hang(request: httpx.Request, body: Any) -> httpx.Response | None:
        release.wait(30)  # a server that does not answer
        return None

    service.answer = hang
    ledger = _ledger(tmp_path, service, flush_interval=0.0)
    try:
        with ledger.run("task"):
            for _ in range(200):
                assert ledger.record(Usage(input_tokens=1), model="gpt-4o")
        assert not ledger.flush(timeout=0.05)  # stuck on the network, and says so
        assert ledger.remote is not None
        assert ledger.remote.spool.pending() >= 200
    finally:
        release.set()
    assert ledger.flush(10)
    ledger.close()
    assert len(service.call_keys()) == 200


def test_dead_letters_count_as_failures(tmp_path: Path, service: FakeService) -> None:
    service.answer = lambda request, body: (
        httpx.Response(422, json={"detail": [{"loc": ["body", "kind"], "msg": "too long"}]})
        if request.url.path == "/v1/runs"
        else None
    )
    ledger = _ledger(tmp_path, service)
    with ledger.run("task"):
        pass
    assert ledger.flush(10)
    ledger.close()
    assert ledger.failures == 2  # the run, and its finish that cannot be stored without it


def test_remote_ledger_has_no_local_store(tmp_path: Path, service: FakeService) -> None:
    ledger = _ledger(tmp_path, service)
    with pytest.raises(ValueError, match="remote service"):
        _ = ledger.repository
    ledger.close()


def test_llmledger_db_names_the_service(
    tmp_path: Path, service: FakeService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMLEDGER_DB", "https://ledger.example:8787")
    monkeypatch.setenv("LLMLEDGER_SPOOL", str(tmp_path / "env-spool.db"))
    ledger = Ledger(_transport=httpx.MockTransport(service))
    assert ledger.remote is not None
    assert ledger.remote.url == "https://ledger.example:8787"
    assert ledger.remote.spool.path == tmp_path / "env-spool.db"
    ledger.record(Usage(input_tokens=1), model="gpt-4o")
    assert ledger.flush(10)
    ledger.close()
    assert service.paths() == ["/v1/calls"]


def test_a_lost_answer_resends_the_same_calls(spool: Spool, service: FakeService) -> None:
    """The server stored the batch but its answer never came (it was killed, the network
    dropped): the resend carries the same dedupe keys, which the server stores once."""
    lost: list[list[str]] = []

    def drop_first_answer(request: httpx.Request, body: Any) -> httpx.Response | None:
        if not lost:
            lost.append([item["call"]["dedupe_key"] for item in body["items"]])
            raise httpx.ReadError("connection reset", request=request)
        return None

    service.answer = drop_first_answer
    spool.append("call", "r1", [_call(k) for k in ("a", "b", "c")])
    sender = _sender(spool, service)
    assert sender.step() == "retry"
    assert spool.pending() == 3
    sender._retry_at = 0.0
    assert sender.send_pending(time.monotonic() + 10)
    assert service.call_keys() == lost[0] == ["a", "b", "c"]


def test_an_unwritable_spool_is_counted_never_raised(service: FakeService) -> None:
    ledger = Ledger(
        "http://ledger.test:8787",
        spool="/proc/llmledger-cannot-be-here/spool.db",
        _transport=httpx.MockTransport(service),
    )
    with ledger.run("task"):
        assert ledger.record(Usage(input_tokens=1), model="gpt-4o") == []
    assert ledger.failures == 3  # the run, the call, the finish
    assert not ledger.flush(0.1)
    ledger.close(0.1)


def test_arun_on_a_remote_ledger(tmp_path: Path, service: FakeService) -> None:
    import asyncio

    ledger = _ledger(tmp_path, service)

    async def work() -> str:
        async with ledger.arun("task", key="async-1") as run:
            ledger.record(Usage(input_tokens=4), model="gpt-4o")
            return run.id

    run_id = asyncio.run(work())
    assert ledger.flush(10)
    ledger.close()
    assert service.paths() == ["/v1/runs", f"/v1/runs/{run_id}/calls", f"/v1/runs/{run_id}/finish"]


def test_a_spool_serves_one_service(tmp_path: Path) -> None:
    from llmledger.remote.spool import SpoolError

    first = Spool(tmp_path / "s.db", "http://a.test")
    first.append("call", None, [_call("a")])
    first.close()
    other = Spool(tmp_path / "s.db", "http://b.test")
    with pytest.raises(SpoolError, match=r"spool of http://a\.test"):
        other.append("call", None, [_call("b")])
    assert Spool(tmp_path / "s.db").pending() == 1


def test_a_refused_run_takes_what_needs_it_to_the_dead_letters_at_once(
    spool: Spool, service: FakeService
) -> None:
    service.answer = lambda request, body: (
        httpx.Response(422, json={"detail": [{"loc": ["body", "name"]}]})
        if request.url.path == "/v1/runs" and body["id"] == "bad"
        else None
    )
    spool.append("run", "bad", [b'{"id":"bad","kind":"task"}'])
    spool.append("run", "child", [b'{"id":"child","kind":"attempt","parent_id":"bad"}'])
    spool.append("call", "child", [_call("c1")])
    spool.append("call", "bad", [_call("b1")])
    spool.append("status", "1.1", [b'{"id":"e1","to_status":"done","run_id":"bad"}'])
    spool.append("finish", "child", [b'{"status":"succeeded"}'])
    spool.append("finish", "bad", [b'{"status":"succeeded"}'])
    spool.append("run", "fine", [b'{"id":"fine","kind":"task"}'])
    spool.append("call", "fine", [_call("f1")])
    sender = _sender(spool, service)
    assert sender.send_pending(time.monotonic() + 10)
    assert sender.failed_sends == 0  # nothing waited on 404 retries
    assert len(spool.dead_letters()) == 7
    assert service.call_keys() == ["f1"]
    assert service.paths() == ["/v1/runs", "/v1/runs", "/v1/runs/fine/calls"]


def test_ops_queued_after_their_run_was_refused_go_to_the_dead_letters(
    spool: Spool, service: FakeService
) -> None:
    service.answer = lambda request, body: (
        httpx.Response(409, json={"detail": "id: other kind"})
        if request.url.path == "/v1/runs"
        else None
    )
    spool.append("run", "bad", [b'{"id":"bad","kind":"task"}'])
    sender = _sender(spool, service)
    assert sender.send_pending(time.monotonic() + 10)
    spool.append("call", "bad", [_call("late")])  # recorded after the refusal
    spool.append("finish", "bad", [b'{"status":"succeeded"}'])
    assert sender.send_pending(time.monotonic() + 10)
    assert sender.failed_sends == 0
    assert service.paths() == ["/v1/runs"]
    assert [letter.kind for letter in spool.dead_letters()] == ["finish", "call", "run"]


def test_threads_record_concurrently_each_call_once(tmp_path: Path, service: FakeService) -> None:
    ledger = _ledger(tmp_path, service, batch_size=64, flush_interval=0.0)

    def work(k: int) -> None:
        with ledger.run("task", key=f"t{k}"):
            for i in range(200):
                ledger.record(Usage(input_tokens=i + 1), model="gpt-4o")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger.flush(30)
    ledger.close()
    keys = service.call_keys()
    assert len(keys) == len(set(keys)) == 1600
    assert ledger.failures == 0
    # Each run's calls went out before its finish.
    finished: set[str] = set()
    for path, _ in service.requests:
        run_id = path.split("/")[3] if path.count("/") >= 4 else None
        if path.endswith("/finish"):
            finished.add(str(run_id))
        elif path.endswith("/calls"):
            assert run_id not in finished
