"""Prometheus metrics (issue 16) on SQLite and the real PostgreSQL: ``GET /metrics`` sums equal
the ledger's totals, count every writer and never go back across a restart;
``PrometheusObserver`` counts what a ``Ledger`` records; no label holds an id."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from llmledger.api import create_app
from llmledger.ledger import Ledger
from llmledger.metrics import FAMILIES, PrometheusObserver
from llmledger.store import open_repository
from llmledger.store.schema import calls
from llmledger.usage import Usage

#: Label names that would be ids (never allowed).
_ID_LABELS = {"run_id", "run", "task", "task_key", "session", "session_id", "user", "id"}


def _item(model: str, key: str, **fields: Any) -> dict[str, Any]:
    return {
        "call": {
            "model": model,
            "provider": "anthropic" if model.startswith("claude") else "openai",
            "message_id": key,
            "started_at": "2026-11-30T12:00:00+00:00",
            **fields,
        }
    }


#: Known calls: priced, reported, unpriced, an error, cache writes split and not, no agent.
_ITEMS = [
    _item(
        "claude-sonnet-4-5",
        "m1",
        agent_id="coder",
        usage={
            "input_tokens": 100,
            "cache_read_tokens": 1000,
            "cache_write_tokens": 300,
            "cache_write_5m_tokens": 200,
            "output_tokens": 50,
            "reasoning_tokens": 20,
        },
    ),
    _item(
        "claude-sonnet-4-5",
        "m2",
        agent_id="coder",
        reported_cost_usd="0.25",
        usage={"input_tokens": 10, "cache_write_tokens": 40, "output_tokens": 5},
    ),
    _item("gpt-4o", "m3", status="error", usage={"input_tokens": 7, "output_tokens": 0}),
    _item("no-such-model-xyz", "m4", usage={"input_tokens": 3, "output_tokens": 4}),
]


def _scrape(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Family name (with ``_total``) -> its samples (labels, value), from the text format."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[sample.name].append((dict(sample.labels), sample.value))
    return out


def _sum(samples: list[tuple[dict[str, str], float]], **match: str) -> float:
    return sum(v for labels, v in samples if all(labels[k] == m for k, m in match.items()))


def _ledger_totals(url: str) -> dict[str, Any]:
    repo = open_repository(url)
    try:
        c = calls.c
        with repo.engine.connect() as conn:
            row = conn.execute(
                select(
                    func.count(),
                    func.sum(c.input_tokens),
                    func.sum(c.cache_read_tokens),
                    func.sum(c.cache_write_tokens),
                    func.sum(c.output_tokens),
                    func.sum(c.reasoning_tokens),
                    func.sum(c.cost_usd),
                )
            ).one()
            unpriced = conn.execute(
                select(func.count()).where(c.cost_status == "unpriced")
            ).scalar_one()
            errors = conn.execute(select(func.count()).where(c.status == "error")).scalar_one()
    finally:
        repo.engine.dispose()
    keys = ("calls", "input", "cache_read", "cache_write", "output", "reasoning", "cost")
    return {**dict(zip(keys, row, strict=True)), "unpriced": unpriced, "errors": errors}


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(db_url, no_auth=True)) as test_client:
        yield test_client


def _post(client: TestClient, items: list[dict[str, Any]]) -> None:
    response = client.post("/v1/calls", json={"items": items})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == []


def test_scrape_sums_equal_the_ledger_totals(db_url: str, client: TestClient) -> None:
    _post(client, _ITEMS)
    run = client.post("/v1/runs", json={"kind": "task", "name": "t"}).json()["run"]
    assert client.post(f"/v1/runs/{run['id']}/finish", json={"status": "failed"}).is_success
    got = _scrape(client)
    want = _ledger_totals(db_url)

    tokens = got["llmledger_tokens_total"]
    for kind in ("input", "cache_read", "cache_write", "output"):
        assert _sum(tokens, type=kind) == want[kind]
    assert _sum(tokens) == sum(want[k] for k in ("input", "cache_read", "cache_write", "output"))
    assert _sum(got["llmledger_reasoning_tokens_total"]) == want["reasoning"] == 20
    writes = got["llmledger_cache_write_tokens_total"]
    assert _sum(writes, ttl="5m") == 200
    assert _sum(writes, ttl="unknown") == 100 + 40
    assert not [labels for labels, _ in writes if labels["ttl"] == "1h"]  # unknown, not zero
    assert _sum(writes) == want["cache_write"]
    assert _sum(got["llmledger_cost_usd_total"]) == pytest.approx(float(want["cost"]))
    assert _sum(got["llmledger_cost_usd_total"], cost_status="reported") == 0.25
    assert _sum(got["llmledger_calls_total"]) == want["calls"] == 4
    assert _sum(got["llmledger_calls_total"], status="error") == want["errors"] == 1
    unpriced = got["llmledger_unpriced_calls_total"]
    assert unpriced == [
        ({"provider": "openai", "model": "no-such-model-xyz", "source": "api"}, want["unpriced"])
    ]
    assert got["llmledger_runs_finished_total"] == [({"kind": "task", "status": "failed"}, 1.0)]
    # Who made the calls; an unknown agent is the empty label.
    agents = {labels["agent"] for labels, _ in got["llmledger_calls_total"]}
    assert agents == {"coder", ""}
    # The server's own requests, by route template (not the raw path with the run's id).
    routes = {labels["route"] for labels, _ in got["llmledger_request_duration_seconds_count"]}
    assert "/v1/runs/{run_id}/finish" in routes
    assert not any(run["id"] in route for route in routes)
    for name, samples in got.items():
        for labels, _ in samples:
            assert not _ID_LABELS & set(labels), name


def test_every_family_has_the_issue_labels(client: TestClient) -> None:
    _post(client, _ITEMS)
    client.post("/v1/calls", json={"items": [{"call": {"usage": {"input_tokens": -1}}}]})
    run = client.post("/v1/runs", json={"kind": "task"}).json()["run"]
    client.post(f"/v1/runs/{run['id']}/finish", json={"status": "succeeded"})
    got = _scrape(client)
    for name, (_, labels) in FAMILIES.items():
        assert got[name], name
        for sample_labels, _ in got[name]:
            assert set(sample_labels) == set(labels), name
    assert got["llmledger_ingest_failures_total"] == [({"reason": "call"}, 1.0)]


def test_another_writer_shows_at_the_next_scrape(db_url: str, client: TestClient) -> None:
    _post(client, _ITEMS[:1])
    before = _sum(_scrape(client)["llmledger_calls_total"])
    # Another process records into the same store, without the server.
    code = (
        "import sys\n"
        "from llmledger.ledger import Ledger\n"
        "from llmledger.usage import Usage\n"
        "with Ledger(sys.argv[1]) as ledger:\n"
        "    ledger.record(Usage(input_tokens=5, output_tokens=6), model='gpt-4o',"
        " provider='openai')\n"
    )
    subprocess.run([sys.executable, "-c", code, db_url], check=True)
    got = _scrape(client)
    assert _sum(got["llmledger_calls_total"]) == before + 1
    assert _sum(got["llmledger_tokens_total"], type="output", model="gpt-4o") == 6


def test_counters_do_not_go_back_across_a_restart(db_url: str) -> None:
    with TestClient(create_app(db_url, no_auth=True)) as first:
        _post(first, _ITEMS)
        before = _scrape(first)
    with TestClient(create_app(db_url, no_auth=True)) as second:
        after = _scrape(second)
    for name in FAMILIES:
        if name == "llmledger_ingest_failures_total":  # the process's own
            continue
        assert dict(map(_frozen, after[name])) == dict(map(_frozen, before[name])), name


def _frozen(sample: tuple[dict[str, str], float]) -> tuple[frozenset[tuple[str, str]], float]:
    return frozenset(sample[0].items()), sample[1]


def test_metrics_need_a_read_key_once_keys_exist(db_url: str) -> None:
    from llmledger import keys

    with TestClient(create_app(db_url)) as client:
        assert client.get("/metrics").status_code == 200  # no key exists yet
        repo = open_repository(db_url)
        try:
            read = keys.create_key(repo, "prom", "read")
            ingest = keys.create_key(repo, "writer", "ingest")
        finally:
            repo.engine.dispose()
        assert client.get("/metrics").status_code == 401
        bearer = {"Authorization": f"Bearer {ingest}"}
        assert client.get("/metrics", headers=bearer).status_code == 403
        bearer = {"Authorization": f"Bearer {read}"}
        assert client.get("/metrics", headers=bearer).status_code == 200


def test_observer_counts_what_the_ledger_records(db_url: str) -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry=registry)
    with (
        Ledger(db_url, observers=[observer]) as ledger,
        ledger.run("task", name="t", agent="coder"),
    ):
        ledger.record(
            Usage(
                input_tokens=100,
                cache_read_tokens=1000,
                cache_write_tokens=300,
                cache_write_1h_tokens=100,
                output_tokens=50,
                reasoning_tokens=20,
            ),
            model="claude-sonnet-4-5",
            provider="anthropic",
        )
        ledger.record(Usage(input_tokens=1, output_tokens=2), model="gpt-4o", cost_usd="0.5")
        ledger.record(Usage(input_tokens=3, output_tokens=4), model="no-such-model-xyz")
    want = _ledger_totals(db_url)

    def value(name: str, **labels: str) -> float:
        total = 0.0
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    for kind in ("input", "cache_read", "cache_write", "output"):
        assert value("llmledger_tokens_total", type=kind) == want[kind]
    assert value("llmledger_tokens_total", agent="coder", type="input") == 104
    assert value("llmledger_reasoning_tokens_total") == want["reasoning"] == 20
    assert value("llmledger_cache_write_tokens_total", ttl="1h") == 100
    assert value("llmledger_cache_write_tokens_total", ttl="unknown") == 200
    assert value("llmledger_cost_usd_total") == pytest.approx(float(want["cost"]))
    assert value("llmledger_cost_usd_total", cost_status="reported") == 0.5
    assert value("llmledger_calls_total") == want["calls"] == 3
    assert value("llmledger_unpriced_calls_total") == want["unpriced"] == 1
    assert value("llmledger_runs_finished_total", kind="task", status="succeeded") == 1
    assert value("llmledger_record_duration_seconds_count") == 3
    assert value("llmledger_record_duration_seconds_sum") > 0
    assert Decimal(str(want["cost"])) > 0


def test_observer_matches_the_scrape_of_the_same_ledger(db_url: str) -> None:
    registry = CollectorRegistry()
    with Ledger(db_url, observers=[PrometheusObserver(registry=registry)]) as ledger:
        ledger.record(Usage(input_tokens=9, output_tokens=8), model="gpt-4o", agent="a")
    with TestClient(create_app(db_url, no_auth=True)) as client:
        scraped = _scrape(client)
    counted: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in FAMILIES:
                counted[sample.name].append((dict(sample.labels), sample.value))
    for name in ("llmledger_tokens_total", "llmledger_calls_total", "llmledger_cost_usd_total"):
        assert dict(map(_frozen, counted[name])) == dict(map(_frozen, scraped[name])), name


def test_each_series_is_written_once_and_odd_label_values_survive(client: TestClient) -> None:
    # Calls of one agent with different statuses and cost statuses: one token series each.
    odd = 'team "a"\\b\nc'
    _post(
        client,
        [
            _item("gpt-4o", "o1", agent_id=odd, usage={"input_tokens": 1, "output_tokens": 1}),
            _item(
                "gpt-4o",
                "o2",
                agent_id=odd,
                status="error",
                reported_cost_usd="0.1",
                usage={"input_tokens": 2, "output_tokens": 1},
            ),
        ],
    )
    text = client.get("/metrics").text
    series = [line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(series) == len(set(series))
    got = _scrape(client)
    assert _sum(got["llmledger_tokens_total"], type="input", agent=odd) == 3
    assert len([s for s in got["llmledger_tokens_total"] if s[0]["type"] == "input"]) == 1


def test_the_collector_in_a_registry_says_what_the_route_says(
    db_url: str, client: TestClient
) -> None:
    from prometheus_client.exposition import generate_latest

    from llmledger.api.app import Store
    from llmledger.api.metrics import LedgerCollector

    _post(client, _ITEMS)
    registry = CollectorRegistry()
    store = Store(db_url)
    registry.register(LedgerCollector(store))
    try:
        text = generate_latest(registry).decode()
    finally:
        store.close()
    theirs = {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    ours = {
        (name, frozenset(labels.items())): value
        for name, samples in _scrape(client).items()
        if name in FAMILIES and name != "llmledger_ingest_failures_total"
        for labels, value in samples
    }
    assert ours == theirs


def test_a_cost_past_64_bits_of_pico_dollars_still_scrapes(db_url: str, client: TestClient) -> None:
    # Two series of the triggers' table (ok and error) that make one cost sample past 2**63
    # pico-dollars (about $9.2M): the sample is the sum, not an error.
    repo = open_repository(db_url)
    try:
        with repo.engine.begin() as conn:
            # Different days: each call's roll-up row stays within 64 bits too.
            for key, status, day in (("big1", "ok", 1), ("big2", "error", 2)):
                conn.execute(
                    calls.insert().values(
                        dedupe_key=key,
                        source="api",
                        model="m",
                        cost_usd=Decimal(5_000_000),
                        cost_status="computed",
                        status=status,
                        token_provenance="reported",
                        started_at=datetime(2026, 12, day, tzinfo=UTC),
                        recorded_at=datetime(2026, 12, 2, tzinfo=UTC),
                    )
                )
    finally:
        repo.engine.dispose()
    got = _scrape(client)
    assert _sum(got["llmledger_cost_usd_total"]) == pytest.approx(10_000_000)
    assert _sum(got["llmledger_calls_total"]) == 2
