"""The dashboard's pages without a browser (the app in-process): every page renders on an empty
ledger (with the "no calls yet" help), on a ledger with unpriced and model-less calls, with
filters and pages; the overview's totals and chart, the top lists, the models page and the
runs pages say what the API says for the same question, on SQLite and PostgreSQL; the
downloads are the API's JSON and a CSV of the same rows; reading needs a read key once keys
exist, taken from the header or from the login form's cookie."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dashboard_seed import SMALL_TASKS, seed
from llmledger.api import create_app
from llmledger.keys import create_key
from llmledger.store import open_repository
from llmledger.web.prices import PriceSource

_UTC = {"tz": "UTC"}


@pytest.fixture
def seeded(db_url: str) -> tuple[str, str]:
    return db_url, seed(db_url)


@pytest.fixture
def client(seeded: tuple[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(seeded[0], no_auth=True)) as test_client:
        yield test_client


def _totals(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-total="(\w+)" data-value="([^"]*)"', html))


def _chart(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S)
    assert match, "the overview has no chart data"
    data: dict[str, Any] = json.loads(match[1])
    return data


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def _api(client: TestClient, path: str, params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _assert_overview_is_the_api(client: TestClient, params: dict[str, Any]) -> dict[str, Any]:
    page = client.get("/", params=params)
    assert page.status_code == 200, page.text
    api_params = {k: v for k, v in params.items() if k != "period"}
    api_params.setdefault("since", params.get("period", "30d"))
    daily = _api(client, "/v1/reports/daily", api_params)
    shown = _totals(page.text)
    totals = daily["totals"]
    for name in ("cost_usd", "total_tokens", "calls", "unpriced_calls"):
        assert _number(shown[name]) == totals[name], name
    prompt = totals["input_tokens"] + totals["cache_read_tokens"] + totals["cache_write_tokens"]
    assert float(shown["cache_hit_rate"]) == pytest.approx(totals["cache_read_tokens"] / prompt)
    chart = _chart(page.text)
    assert chart["labels"] == [row["period"] for row in daily["rows"]]
    for dataset in chart["datasets"]:
        model = None if dataset["label"] == "(no model)" else dataset["label"]
        for row, value in zip(daily["rows"], dataset["data"], strict=True):
            parts = [b for b in row["breakdown"] if b["model"] == model]
            assert value == (parts[0]["cost_usd"] if parts else None)
    # The download is the API's document.
    assert client.get("/", params={**params, "format": "json"}).json() == daily
    return daily


def test_overview_equals_the_api(client: TestClient) -> None:
    daily = _assert_overview_is_the_api(client, {"period": "30d", **_UTC})
    assert daily["totals"]["calls"] == 4 + 10 + 3 + SMALL_TASKS
    assert daily["totals"]["unpriced_calls"] == 2  # no-such-model-x and the model-less call


@pytest.mark.parametrize(
    "filters",
    [
        {"model": "gpt-4o"},
        {"source": "codex"},
        {"agent": "codex"},
        {"model": ["gpt-4o", "gpt-5"]},
        {"period": "7d"},
        {"period": "custom", "since": "2000-01-01", "until": "2000-01-31"},
    ],
)
def test_filters_change_the_overview_as_the_api(
    client: TestClient, filters: dict[str, Any]
) -> None:
    everything = _api(client, "/v1/reports/daily", {"since": "30d", **_UTC})
    params = {"period": "30d", **_UTC, **filters}
    if params["period"] == "custom":
        page = client.get("/", params=params)
        assert "No dated calls in this period." in page.text
        assert _totals(page.text)["calls"] == "0"
        return
    daily = _assert_overview_is_the_api(client, params)
    assert daily["totals"]["calls"] < everything["totals"]["calls"]


def test_the_period_picker_asks_the_api_the_same_question(client: TestClient) -> None:
    page = client.get("/", params={"period": "month", **_UTC}).text
    assert re.search(r"GET /v1/reports/daily\?since=\d{4}-\d{2}-01&amp;tz=UTC", page)
    assert "GET /v1/reports/daily?since=7d&amp;tz=UTC" in client.get("/?period=7d&tz=UTC").text


def test_unpriced_calls_link_to_their_models(client: TestClient) -> None:
    page = client.get("/", params=_UTC).text
    assert 'href="/models?period=30d&amp;tz=UTC#unpriced">2 — which models</a>' in page
    models = client.get("/models", params=_UTC).text
    unpriced = models[models.index('id="unpriced"') :]
    assert "no-such-model-x: 1 call with no known price" in unpriced
    assert "(none): 1 call with no known price" in unpriced


def test_models_page_is_the_tokens_report_with_price_sources(client: TestClient) -> None:
    document = _api(client, "/v1/reports/tokens", {"group_by": "model", "since": "30d", **_UTC})
    page = client.get("/models", params=_UTC)
    assert page.status_code == 200
    assert client.get("/models", params={**_UTC, "format": "json"}).json() == document
    assert [r["model"] for r in document["rows"]].count(None) == 1
    assert '<tr data-model=""><th scope="row">(none)</th>' in page.text
    labels = set(re.findall(r'<span class="src src-(\w+)">([^<]*)</span>', page.text))
    assert ("reported", "reported") in labels
    assert ("unpriced", "unpriced") in labels
    assert any(
        s == "computed" and label.startswith("computed (genai-prices") for s, label in labels
    )
    rows = list(csv.DictReader(io.StringIO(client.get("/models?format=csv&tz=UTC").text)))
    by_status = {(r["model"], r["cost_status"]): r for r in rows}
    assert by_status[("gpt-5", "reported")]["cost_usd"] == "0.250000000000"
    assert by_status[("", "unpriced")]["calls"] == "1"


def test_top_agents_and_tasks_are_the_apis(client: TestClient) -> None:
    agents = _api(client, "/v1/reports/tokens", {"group_by": "agent", "since": "30d", **_UTC})
    top = client.get("/overview/top", params={**_UTC, "format": "json"}).json()
    assert top["agents"] == agents
    tasks = _api(client, "/v1/runs", {"kind": "task", "since": "30d", "limit": 10_000})["runs"]
    by_cost = sorted(tasks, key=lambda r: -(r["inclusive"]["cost_usd"] or 0))
    assert [t["id"] for t in top["tasks"]] == [t["id"] for t in by_cost[:10]]
    fragment = client.get("/overview/top", params={**_UTC, "fragment": "1"}).text
    assert not fragment.startswith("<!doctype")
    assert 'href="/runs/' in fragment


def test_runs_are_paginated_as_the_api_lists_them(client: TestClient) -> None:
    listed = _api(client, "/v1/runs", {"limit": 100})["runs"]
    first = client.get("/runs").text
    second = client.get("/runs", params={"page": 2}).text
    ids = re.findall(r'<tr data-run="(\w+)">', first) + re.findall(r'<tr data-run="(\w+)">', second)
    assert len(re.findall(r'<tr data-run="', first)) == 25
    assert ids == [r["id"] for r in listed]
    assert 'rel="next" href="/runs?size=25&amp;page=2"' in first
    assert 'rel="prev"' in second
    assert 'rel="next"' not in second


@pytest.mark.parametrize(
    ("params", "expect"),
    [({"kind": "attempt"}, 2), ({"status": "failed"}, 1), ({"agent": "codex"}, SMALL_TASKS + 1)],
)
def test_runs_filters(client: TestClient, params: dict[str, str], expect: int) -> None:
    rows = client.get("/runs", params={**params, "format": "json", "size": 100}).json()["runs"]
    assert rows == _api(client, "/v1/runs", {**params, "limit": 100})["runs"]
    assert len(rows) == expect


def test_run_page_shows_the_tree_calls_and_timeline(
    client: TestClient, seeded: tuple[str, str]
) -> None:
    workflow = seeded[1]
    document = _api(client, f"/v1/runs/{workflow}", None)
    page = client.get(f"/runs/{workflow}")
    assert page.status_code == 200
    assert client.get(f"/runs/{workflow}?format=json").json() == document
    root = document["run"]
    shown = _totals(page.text)
    assert _number(shown["cost_usd"]) == root["inclusive"]["cost_usd"]
    assert int(shown["calls"]) == root["inclusive"]["calls"] == 4
    task = root["children"][0]
    assert [c["status"] for c in task["children"]] == ["failed", "succeeded"]
    assert '<span class="tag">2 attempts</span>' in page.text
    assert page.text.count('<tr data-part="own">') == 4  # workflow, task, two attempts
    assert "Calls (4)" in page.text
    assert "todo → " in page.text
    assert "in_progress → " in page.text
    rows = list(csv.DictReader(io.StringIO(client.get(f"/runs/{workflow}?format=csv").text)))
    assert [(r["kind"], r["depth"]) for r in rows] == [
        ("workflow", "0"),
        ("task", "1"),
        ("attempt", "2"),
        ("attempt", "2"),
    ]
    assert client.get("/runs/no-such-run").status_code == 404


def test_bad_parameters_are_explained_not_crashed(client: TestClient) -> None:
    page = client.get("/", params={"period": "custom", "since": "yesterday-ish"})
    assert page.status_code == 422
    assert 'role="alert"' in page.text
    assert client.get("/runs", params={"since": "soon"}).status_code == 422


def test_an_empty_ledger_says_how_to_start(sqlite_url: str) -> None:
    with TestClient(create_app(sqlite_url, no_auth=True)) as empty:
        overview = empty.get("/")
        assert overview.status_code == 200
        assert "No calls yet" in overview.text
        assert "llmledger import" in overview.text
        for path in ("/models", "/runs", "/overview/top", "/login"):
            assert empty.get(path).status_code == 200, path
        assert "No runs match." in empty.get("/runs").text
        assert empty.get("/?format=csv").text == "\n"


def test_static_files_and_vendored_chart_are_served(client: TestClient) -> None:
    for path in (
        "/static/dashboard.css",
        "/static/dashboard.js",
        "/static/vendor/chart.js/chart.umd.min.js",
        "/static/vendor/chart.js/LICENSE.md",
    ):
        assert client.get(path).status_code == 200, path
    assert "/static" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_pages_need_a_read_key_once_keys_exist(sqlite_url: str) -> None:
    seed(sqlite_url)
    repo = open_repository(sqlite_url)
    keys = {scope: create_key(repo, scope, scope) for scope in ("ingest", "read")}
    repo.engine.dispose()
    with TestClient(create_app(sqlite_url), follow_redirects=False) as client:
        asked = client.get("/runs?kind=task")
        assert asked.status_code == 401
        assert 'name="next" value="/runs?kind=task"' in asked.text
        bearer = {"Authorization": f"Bearer {keys['read']}"}
        assert client.get("/", headers=bearer).status_code == 200
        ingest_only = {"Authorization": f"Bearer {keys['ingest']}"}
        assert client.get("/", headers=ingest_only).status_code == 403
        wrong = client.post("/login", data={"key": "llk_wrong", "next": "/runs"})
        assert wrong.status_code == 401
        signed = client.post("/login", data={"key": keys["read"], "next": "/runs?kind=task"})
        assert signed.status_code == 303
        assert signed.headers["location"] == "/runs?kind=task"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert client.get("/runs").status_code == 200  # the cookie
        off_site = client.post("/login", data={"key": keys["read"], "next": "//evil.example"})
        assert off_site.headers["location"] == "/"
        client.post("/logout")
        assert client.get("/runs").status_code == 401


def test_pages_are_open_on_a_service_without_keys(sqlite_url: str) -> None:
    with TestClient(create_app(sqlite_url)) as client:
        assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    ("status", "version", "label"),
    [
        ("reported", None, "reported"),
        ("computed", "genai-prices 0.2.3", "computed (genai-prices 0.2.3)"),
        ("computed", "overrides:ab12cd34", "override (overrides:ab12cd34)"),
        ("included", "overrides:ab12cd34", "included (overrides:ab12cd34)"),
        ("unpriced", None, "unpriced"),
    ],
)
def test_a_price_source_says_where_the_price_came_from(
    status: str, version: str | None, label: str
) -> None:
    assert PriceSource("m", status, version, 1, None).label == label
