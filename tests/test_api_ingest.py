"""The service's writes (POST /v1/...) on SQLite and the real PostgreSQL: every write retried
gives the same answer and stores once; one bad item never rejects the others; 404, 409, 413,
422 name what is wrong; a store that cannot be reached is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmledger.api import create_app
from llmledger.ledger import Ledger
from llmledger.pricing import Pricer
from llmledger.store import Repository, open_repository
from llmledger.store.schema import calls, runs, task_status_events


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    """The service on a fresh ledger, without key checks."""
    with TestClient(create_app(db_url, no_auth=True)) as test_client:
        yield test_client


@pytest.fixture
def repo(db_url: str, client: TestClient) -> Iterator[Repository]:
    """The same ledger, read directly."""
    repository = open_repository(db_url)
    yield repository
    repository.engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _count(repo: Repository, table: sqlalchemy.Table) -> int:
    with repo.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _record(key: str | None = None, **fields: Any) -> dict[str, Any]:
    call: dict[str, Any] = {
        "model": "gpt-4o",
        "provider": "openai",
        "started_at": "2026-11-30T12:00:00+00:00",
        "usage": {"input_tokens": 1000, "output_tokens": 100},
        **fields,
    }
    if key is not None:
        call["dedupe_key"] = key
    return {"call": call}


_CHAT = {
    "id": "chatcmpl-ingest-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
}


# -- runs --------------------------------------------------------------------------------


def test_create_run_retried_is_one_run(client: TestClient, repo: Repository) -> None:
    body = {"id": "run-1", "kind": "task", "name": "build", "key": "1.1", "host": "laptop"}
    first = client.post("/v1/runs", json=body)
    again = client.post("/v1/runs", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    run = first.json()["run"]
    assert (run["id"], run["kind"], run["key"], run["status"]) == (
        "run-1",
        "task",
        "1.1",
        "running",
    )
    assert run["own"]["calls"] == 0
    assert run["inclusive"]["cost_usd"] is None
    assert _count(repo, runs) == 1
    stored = repo.get_run("run-1")
    assert stored is not None
    # A remote process is not the server's to check: no pid; the client's host is kept.
    assert stored["owner_pid"] is None
    assert stored["owner_host"] == "laptop"
    assert stored["metadata"] == {"host": "laptop"}


def test_create_run_without_id_or_host(client: TestClient, repo: Repository) -> None:
    response = client.post("/v1/runs", json={"kind": "session"})
    assert response.status_code == 201
    stored = repo.get_run(response.json()["run"]["id"])
    assert stored is not None
    assert (stored["owner_host"], stored["owner_pid"], stored["metadata"]) == ("remote", None, None)


def test_create_run_with_an_id_of_another_kind_is_409(client: TestClient) -> None:
    assert client.post("/v1/runs", json={"id": "r", "kind": "task"}).status_code == 201
    response = client.post("/v1/runs", json={"id": "r", "kind": "plan"})
    assert response.status_code == 409
    assert response.json()["detail"].startswith("id: ")


def test_parents_by_id_and_by_newest_key(client: TestClient, repo: Repository) -> None:
    client.post("/v1/runs", json={"id": "old", "kind": "task", "key": "T-1"})
    client.post(
        "/v1/runs",
        json={"id": "new", "kind": "task", "key": "T-1", "started_at": "2099-01-01T00:00:00Z"},
    )
    by_key = client.post("/v1/runs", json={"kind": "attempt", "parent_key": "T-1", "attempt": 1})
    by_id = client.post("/v1/runs", json={"kind": "attempt", "parent_id": "old", "attempt": 1})
    assert (by_key.status_code, by_id.status_code) == (201, 201)
    child = repo.get_run(by_key.json()["run"]["id"])
    assert child is not None
    assert child["parent_id"] == "new"
    other = repo.get_run(by_id.json()["run"]["id"])
    assert other is not None
    assert other["parent_id"] == "old"


@pytest.mark.parametrize("field", ["parent_id", "parent_key"])
def test_unknown_parent_is_404_naming_the_field(client: TestClient, field: str) -> None:
    response = client.post("/v1/runs", json={"kind": "task", field: "missing"})
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": ""}, "kind"),
        ({"kind": "x" * 33}, "kind"),
        ({"kind": "task", "id": "has space"}, "id"),
        ({"kind": "task", "started_at": "1970-01-01T00:00:00Z"}, "started_at"),
        ({"kind": "task", "surprise": 1}, "surprise"),
        ({"name": "no kind"}, "kind"),
    ],
)
def test_bad_run_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 422
    assert any(error["loc"][-1] == field for error in response.json()["detail"])


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    response = client.post(
        "/v1/calls", content=b'{"items": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


# -- finish ------------------------------------------------------------------------------


def test_finish_retried_recounts_late_calls_and_keeps_the_finish(
    client: TestClient, repo: Repository
) -> None:
    client.post("/v1/runs", json={"id": "job", "kind": "task"})
    client.post("/v1/runs/job/calls", json={"items": [_record("a")]})
    body = {"status": "succeeded", "finished_at": "2099-01-01T00:00:00Z", "metadata": {"n": 1}}
    first = client.post("/v1/runs/job/finish", json=body)
    assert first.status_code == 200
    run = first.json()["run"]
    assert (run["status"], run["inclusive"]["calls"]) == ("succeeded", 1)
    # A call that arrives after the finish (a spool drained late), then the finish retried.
    client.post("/v1/runs/job/calls", json={"items": [_record("b")]})
    again = client.post("/v1/runs/job/finish", json=body)
    assert again.status_code == 200
    run = again.json()["run"]
    assert run["finished_at"] == first.json()["run"]["finished_at"]
    assert run["inclusive"]["calls"] == 2
    stored = repo.get_run("job")
    assert stored is not None
    assert (stored["call_count"], stored["input_tokens"]) == (2, 2000)
    assert stored["metadata"] == {"n": 1}


def test_finish_with_another_status_is_409(client: TestClient) -> None:
    client.post("/v1/runs", json={"id": "job", "kind": "task"})
    assert client.post("/v1/runs/job/finish", json={"status": "failed"}).status_code == 200
    response = client.post("/v1/runs/job/finish", json={"status": "succeeded"})
    assert response.status_code == 409
    assert response.json()["detail"].startswith("status: ")


def test_finish_unknown_run_is_404_and_bad_status_422(client: TestClient) -> None:
    response = client.post("/v1/runs/nope/finish", json={"status": "succeeded"})
    assert response.status_code == 404
    client.post("/v1/runs", json={"id": "job", "kind": "task"})
    response = client.post("/v1/runs/job/finish", json={"status": "running"})
    assert response.status_code == 422


def test_finish_before_the_start_is_422_naming_finished_at(client: TestClient) -> None:
    client.post(
        "/v1/runs", json={"id": "job", "kind": "task", "started_at": "2026-06-01T00:00:00Z"}
    )
    response = client.post(
        "/v1/runs/job/finish", json={"status": "succeeded", "finished_at": "2026-01-01T00:00:00Z"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "finished_at"]


# -- calls -------------------------------------------------------------------------------


def test_batch_retried_stores_each_call_once(client: TestClient, repo: Repository) -> None:
    client.post("/v1/runs", json={"id": "job", "kind": "task"})
    items = [
        _record("k-1"),
        _record(None, usage={"input_tokens": 7, "output_tokens": 3}),  # no id: content hash
        {"payload": _CHAT},
        {
            "payload": {"model": "gpt-4o", "usage": {"prompt_tokens": 5, "completion_tokens": 1}},
            "format": "openai_chat_completions",
        },
    ]
    first = client.post("/v1/runs/job/calls", json={"items": items})
    again = client.post("/v1/runs/job/calls", json={"items": items})
    assert first.status_code == again.status_code == 200
    one, two = first.json(), again.json()
    assert (one["accepted"], one["duplicates"], one["rejected"]) == (4, 0, [])
    assert (two["accepted"], two["duplicates"], two["rejected"]) == (0, 4, [])
    assert one["calls"] == two["calls"]
    assert [call["index"] for call in one["calls"]] == [0, 1, 2, 3]
    assert one["calls"][0]["dedupe_key"] == "k-1"
    assert one["calls"][1]["dedupe_key"].startswith("sha256:")
    assert one["calls"][2]["dedupe_key"] == "chatcmpl-ingest-1"
    assert one["calls"][3]["dedupe_key"].startswith("sha256:")
    assert _count(repo, calls) == 4
    with repo.engine.connect() as conn:
        assert set(conn.execute(select(calls.c.run_id)).scalars()) == {"job"}


def test_prices_are_the_servers_and_a_reported_cost_wins(
    client: TestClient, repo: Repository
) -> None:
    items = [_record("priced"), _record("reported", reported_cost_usd="0.25")]
    result = client.post("/v1/calls", json={"items": items}).json()
    priced, reported = result["calls"]
    from llmledger.records import CallRecord, call_of_record

    expected = Pricer().price(call_of_record(CallRecord.model_validate(items[0]["call"])))
    assert expected.cost_usd is not None
    assert priced["cost_status"] == expected.cost_status == "computed"
    assert priced["cost_usd"] == pytest.approx(float(expected.cost_usd))
    assert (reported["cost_usd"], reported["cost_status"]) == (0.25, "reported")
    with repo.engine.connect() as conn:
        stored = conn.execute(select(calls.c.cost_usd).where(calls.c.dedupe_key == "reported"))
        assert stored.scalar_one() == Decimal("0.25")


def test_a_batch_with_bad_items_stores_the_others(client: TestClient, repo: Repository) -> None:
    items = [
        _record("good-1"),
        _record("negative", usage={"input_tokens": -5}),
        {"payload": "not json at all"},
        {"neither": 1},
        _record("bad-split", usage={"output_tokens": 1, "reasoning_tokens": 5}),
        {"call": {"usage": {}}, "extra": True},
        _record("good-2"),
    ]
    response = client.post("/v1/calls", json={"items": items})
    assert response.status_code == 200
    result = response.json()
    assert result["accepted"] == 2
    rejected = {entry["index"]: entry["error"] for entry in result["rejected"]}
    assert sorted(rejected) == [1, 2, 3, 4, 5]
    assert rejected[1].startswith("call.usage.input_tokens")
    assert rejected[2].startswith("payload: ")
    assert "reasoning_tokens" in rejected[4]
    assert [call["index"] for call in result["calls"]] == [0, 6]
    assert _count(repo, calls) == 2


def test_a_json_lines_payload_with_a_bad_line(client: TestClient, repo: Repository) -> None:
    other = {**_CHAT, "id": "chatcmpl-ingest-2"}
    text = json.dumps(_CHAT) + "\n{broken\n" + json.dumps(other) + "\n"
    result = client.post("/v1/calls", json={"items": [{"payload": text}]}).json()
    assert result["accepted"] == 2
    assert len(result["rejected"]) == 1
    assert result["rejected"][0]["index"] == 0
    assert "line 2" in result["rejected"][0]["error"]
    assert [call["dedupe_key"] for call in result["calls"]] == [
        "chatcmpl-ingest-1",
        "chatcmpl-ingest-2",
    ]


@pytest.mark.parametrize(
    "name",
    ["openai/openai-chat.json", "claude-code/claude-json-success.json"],
)
def test_a_payload_costs_what_record_makes_of_it(
    client: TestClient, repo: Repository, fixtures_dir: Path, tmp_path: Path, name: str
) -> None:
    payload = json.loads((fixtures_dir / name).read_text())
    local = Ledger(f"sqlite:///{tmp_path / 'local.db'}")
    with local.run("task", "local") as run:
        local.record(payload)
    expected = local.totals(run.id)
    local.close()
    client.post("/v1/runs", json={"id": "remote", "kind": "task"})
    result = client.post("/v1/runs/remote/calls", json={"items": [{"payload": payload}]}).json()
    assert result["rejected"] == []
    got = client.post("/v1/runs/remote/finish", json={"status": "succeeded"}).json()["run"]
    assert got["inclusive"]["calls"] == expected.calls
    assert got["inclusive"]["total_tokens"] == expected.usage.total_tokens
    expected_cost = None if expected.cost_usd is None else float(expected.cost_usd)
    assert got["inclusive"]["cost_usd"] == expected_cost


def test_the_batch_host_fills_calls_that_name_none(client: TestClient, repo: Repository) -> None:
    items = [_record("mine", host="build-7"), _record("theirs"), {"payload": _CHAT}]
    client.post("/v1/calls", json={"items": items, "host": "laptop"})
    with repo.engine.connect() as conn:
        hosts = {key: host for key, host in conn.execute(select(calls.c.dedupe_key, calls.c.host))}
    assert hosts == {"mine": "build-7", "theirs": "laptop", "chatcmpl-ingest-1": "laptop"}


def test_a_call_whose_given_cost_was_invalid_stays_unpriced(
    client: TestClient, repo: Repository
) -> None:
    """A remote ledger sends a call record() was given an unreadable cost for with the
    bad_cost_usd flag: the server must not guess the cost from the usage either."""
    flagged = _record("bad-cost", metadata={"flags": ["bad_cost_usd"]})
    result = client.post("/v1/calls", json={"items": [flagged, _record("good")]}).json()
    by_key = {c["dedupe_key"]: c for c in result["calls"]}
    assert (by_key["bad-cost"]["cost_status"], by_key["bad-cost"]["cost_usd"]) == (
        "unpriced",
        None,
    )
    assert by_key["good"]["cost_status"] == "computed"
    with repo.engine.connect() as conn:
        stored = dict(conn.execute(select(calls.c.dedupe_key, calls.c.cost_status)).all())
    assert stored == {"bad-cost": "unpriced", "good": "computed"}


def test_a_larger_copy_replaces_a_stored_call(client: TestClient, repo: Repository) -> None:
    small = _record("stream", usage={"input_tokens": 10, "output_tokens": 1})
    large = _record("stream", usage={"input_tokens": 10, "output_tokens": 50})
    assert client.post("/v1/calls", json={"items": [small]}).json()["accepted"] == 1
    result = client.post("/v1/calls", json={"items": [large]}).json()
    assert (result["accepted"], result["duplicates"]) == (1, 0)
    with repo.engine.connect() as conn:
        assert conn.execute(select(calls.c.output_tokens)).scalar_one() == 50


def test_calls_of_an_unknown_run_are_404(client: TestClient, repo: Repository) -> None:
    response = client.post("/v1/runs/nope/calls", json={"items": [_record("x")]})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("run_id: ")
    assert _count(repo, calls) == 0


def test_over_1000_items_is_413(client: TestClient, repo: Repository) -> None:
    items = [_record(f"k{i}") for i in range(1001)]
    response = client.post("/v1/calls", json={"items": items})
    assert response.status_code == 413
    assert "1000" in response.json()["detail"]
    assert _count(repo, calls) == 0
    assert client.post("/v1/calls", json={"items": items[:1000]}).json()["accepted"] == 1000


def test_a_body_over_16_mib_is_413(client: TestClient) -> None:
    padding = "x" * (16 * 1024 * 1024)
    body = json.dumps({"items": [{"payload": padding}]}).encode()
    response = client.post("/v1/calls", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    response = client.post(
        "/v1/calls", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


# -- task status events ------------------------------------------------------------------


def test_status_event_retried_is_one_event(client: TestClient, repo: Repository) -> None:
    body = {
        "id": "evt-1",
        "to_status": "done",
        "from_status": "doing",
        "at": "2026-11-30T12:00:00Z",
    }
    first = client.post("/v1/tasks/1.2/status", json=body)
    again = client.post("/v1/tasks/1.2/status", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == {"event_id": "evt-1", "created": True}
    assert again.json() == {"event_id": "evt-1", "created": False}
    assert _count(repo, task_status_events) == 1


def test_status_events_without_id_are_one_per_body(client: TestClient, repo: Repository) -> None:
    done = client.post("/v1/tasks/a/b/status", json={"to_status": "done", "job": "j"})
    same = client.post("/v1/tasks/a/b/status", json={"job": "j", "to_status": "done"})
    other = client.post("/v1/tasks/a/b/status", json={"to_status": "review", "job": "j"})
    assert (done.status_code, same.status_code, other.status_code) == (201, 200, 201)
    assert done.json()["event_id"] == same.json()["event_id"] != other.json()["event_id"]
    with repo.engine.connect() as conn:
        keys = set(conn.execute(select(task_status_events.c.task_key)).scalars())
    assert keys == {"a/b"}  # a key may hold slashes
    assert _count(repo, task_status_events) == 2


def test_status_event_of_an_unknown_run_is_404(client: TestClient) -> None:
    response = client.post("/v1/tasks/t/status", json={"to_status": "done", "run_id": "nope"})
    assert response.status_code == 404
    assert response.json()["detail"].startswith("run_id: ")


# -- the store down ----------------------------------------------------------------------


def test_an_unreachable_store_is_503_with_retry_after() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/test"
    with TestClient(create_app(url, no_auth=True)) as down:
        for response in (
            down.get("/healthz"),
            down.post("/v1/runs", json={"kind": "task"}),
            down.post("/v1/calls", json={"items": [_record("x")]}),
            down.post("/v1/tasks/t/status", json={"to_status": "done"}),
        ):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "2"
            assert "unavailable" in response.json()["detail"]


@pytest.mark.postgres
def test_a_store_whose_tables_vanish_is_503(pg_url: str) -> None:
    schema = pg_url.rsplit("%3D", 1)[1]
    with TestClient(create_app(pg_url, no_auth=True)) as live:
        assert live.get("/healthz").status_code == 200
        assert live.post("/v1/calls", json={"items": [_record("before")]}).status_code == 200
        admin = sqlalchemy.create_engine(pg_url.split("?")[0])
        try:
            with admin.begin() as conn:  # the tables vanish; the schema stays for the fixture
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        finally:
            admin.dispose()
        for response in (
            live.get("/healthz"),
            live.post("/v1/calls", json={"items": [_record("after")]}),
            live.post("/v1/runs", json={"kind": "task", "id": uuid.uuid4().hex}),
        ):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"source": "s" * 49}, "call.source: String should have at most 48 characters"),
        ({"model": "m" * 201}, "call.model: String should have at most 200 characters"),
        ({"agent_id": "a" * 129}, "call.agent_id: String should have at most 128 characters"),
        ({"model": "gpt\x00"}, "model: contains a NUL character"),
        ({"metadata": {"note": "a\x00b"}}, "metadata: contains a NUL character"),
        ({"metadata": {"n": 10**30}}, "metadata: holds an integer beyond 64 bits"),
        ({"duration_ms": 10**20}, "duration_ms: "),
    ],
)
def test_a_call_the_store_cannot_hold_is_rejected_alone(
    client: TestClient, repo: Repository, fields: dict[str, Any], error: str
) -> None:
    # PostgreSQL would refuse the whole batch's transaction; SQLite answers the same.
    items = [_record("bad", **fields), _record("good")]
    response = client.post("/v1/calls", json={"items": items})
    assert response.status_code == 200
    result = response.json()
    assert result["accepted"] == 1
    assert len(result["rejected"]) == 1
    assert result["rejected"][0]["index"] == 0
    assert result["rejected"][0]["error"].startswith(error)
    assert _count(repo, calls) == 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/runs", {"kind": "task\x00"}, "kind"),
        ("/v1/runs", {"kind": "task", "metadata": {"n": 10**30}}, "metadata"),
        ("/v1/runs", {"kind": "task", "metadata": {"k\x00": 1}}, "metadata"),
        ("/v1/tasks/t/status", {"to_status": "done\x00"}, "to_status"),
        ("/v1/tasks/t/status", {"to_status": "done", "metadata": {"n": 2**70}}, "metadata"),
        ("/v1/calls", {"items": [], "host": "h\x00"}, "host"),
    ],
)
def test_a_value_the_store_cannot_hold_is_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_concurrent_batches_sharing_keys_all_succeed(client: TestClient, repo: Repository) -> None:
    # The same 300 calls in four orders at once: on PostgreSQL, rows locked in different
    # orders would deadlock (answered 503); written in key order they wait for each other.
    import random
    from concurrent.futures import ThreadPoolExecutor

    items = [_record(f"shared-{i:03d}") for i in range(300)]
    orders = [random.Random(seed).sample(items, len(items)) for seed in range(4)] * 2

    def post(batch: list[dict[str, Any]]) -> tuple[int, int]:
        response = client.post("/v1/calls", json={"items": batch})
        assert response.status_code == 200, response.text
        return response.json()["accepted"], response.json()["duplicates"]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(post, orders))
    assert sum(accepted for accepted, _ in results) == 300
    assert _count(repo, calls) == 300
