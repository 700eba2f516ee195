"""The Grafana dashboard (issue 16): deploy/grafana/llmledger.json is importable (a data source
chosen by a variable, no fixed data source), and every panel's query parses and returns data
on a real Prometheus (Debian's) that scrapes every second: once a stand-in that shows every
metric family and label the issue fixes with known values (tests/metrics_exposition.py), and
once a real ``llmledger serve`` fed with calls between its scrapes."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from metrics_exposition import (
    CACHE_HIT_RATE,
    ERROR_RATIO,
    FAMILIES,
    StandInTarget,
    referenced_metrics,
)
from prometheus_tools import PrometheusProcess
from server import ServerProcess

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARD = json.loads((DEPLOY / "llmledger.json").read_text())
# What Grafana puts in place of its variables; the windows cover the few seconds of data.
_VARIABLES = {
    "$__rate_interval": "30s",
    "$__interval": "30s",
    "$__range": "30s",
    "$job": ".*",
}


def _targets() -> list[tuple[str, str]]:
    """(panel title and refId, the query with the variables replaced) for every target."""
    found = []
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in _VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a variable the test does not know: {expr}"
            found.append((f"{panel['title']} {target['refId']}", expr))
    return found


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    """A real Prometheus that has scraped the stand-in at least 5 times."""
    with (
        StandInTarget() as target,
        PrometheusProcess(tmp_path_factory.mktemp("prometheus"), target=target.address) as prom,
    ):
        prom.wait_for_scrapes(5)
        yield prom


@pytest.mark.parametrize(("where", "expr"), _targets(), ids=[where for where, _ in _targets()])
def test_every_panel_query_parses_and_returns_data(
    prometheus: PrometheusProcess, where: str, expr: str
) -> None:
    answer = prometheus.query(expr)
    assert answer["status"] == "success", f"{where}: {answer}"
    result = answer["data"]["result"]
    assert result, f"{where}: no data for {expr}"
    values = [float(series["value"][1]) for series in result]
    assert all(not math.isnan(value) for value in values), f"{where}: {result}"


def _panel_query(title: str, ref: str = "A") -> str:
    return dict(_targets())[f"{title} {ref}"]


def _value(prometheus: PrometheusProcess, expr: str) -> float:
    (series,) = prometheus.query(expr)["data"]["result"]
    return float(series["value"][1])


def test_the_cache_hit_rate_panel_is_cache_reads_over_input_side_tokens(
    prometheus: PrometheusProcess,
) -> None:
    value = _value(prometheus, _panel_query("Cache hit rate"))
    assert value == pytest.approx(CACHE_HIT_RATE, rel=1e-9)


def test_the_error_ratio_panel_is_error_calls_over_all_calls(
    prometheus: PrometheusProcess,
) -> None:
    value = _value(prometheus, _panel_query("Call error ratio"))
    assert value == pytest.approx(ERROR_RATIO, rel=1e-9)


def test_the_tokens_panel_splits_by_the_four_buckets(prometheus: PrometheusProcess) -> None:
    result = prometheus.query(_panel_query("Tokens by type"))["data"]["result"]
    assert {series["metric"]["type"] for series in result} == {
        "input",
        "cache_read",
        "cache_write",
        "output",
    }


def test_top_agents_keeps_the_unknown_agent_as_an_empty_name(
    prometheus: PrometheusProcess,
) -> None:
    result = prometheus.query(_panel_query("Top agents by cost"))["data"]["result"]
    assert {series["metric"].get("agent", "") for series in result} == {"coder", "", "reviewer"}


def test_the_dashboard_is_importable_with_any_prometheus_data_source() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    text = json.dumps(DASHBOARD)
    uids = set(re.findall(r'"uid": "([^"]*)"', text)) - {DASHBOARD["uid"]}
    assert uids == {"${datasource}"}, "every panel and query uses the data source variable"
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what question it answers"


def test_the_dashboard_has_the_panels_the_issue_lists() -> None:
    titles = {panel["title"] for panel in DASHBOARD["panels"]}
    assert {
        "Cost per day by model",
        "Spend rate ($/h)",
        "Tokens by type",
        "Cache hit rate",
        "Calls by status",
        "Call error ratio",
        "Unpriced calls",
        "Top agents by cost",
        "Top models by cost",
        "Runs finished by status",
        "Request latency by route",
    } <= titles


def test_the_dashboard_reads_every_family_and_only_those() -> None:
    assert referenced_metrics(json.dumps(DASHBOARD)) == FAMILIES


def test_the_provisioning_example_points_at_the_dashboard_file() -> None:
    import yaml

    provider = yaml.safe_load((DEPLOY / "provisioning/dashboards/llmledger.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    source = yaml.safe_load(
        (DEPLOY / "provisioning/datasources/llmledger-prometheus.yml").read_text()
    )
    assert source["datasources"][0]["type"] == "prometheus"


def _round(number: int) -> list[dict[str, Any]]:
    """One batch of calls for the live server: priced, reported, an error, unpriced, no agent."""
    at = datetime.now(UTC).isoformat()

    def call(model: str, provider: str, **fields: Any) -> dict[str, Any]:
        key = f"live-{number}-{model}-{fields.get('status', 'ok')}"
        return {
            "call": {
                "model": model,
                "provider": provider,
                "message_id": key,
                "started_at": at,
                **fields,
            }
        }

    usage = {
        "input_tokens": 100,
        "cache_read_tokens": 700,
        "cache_write_tokens": 200,
        "cache_write_5m_tokens": 150,
        "output_tokens": 50,
        "reasoning_tokens": 20,
    }
    return [
        call("claude-sonnet-4-5", "anthropic", agent_id="coder", usage=usage),
        call(
            "gpt-4o",
            "openai",
            reported_cost_usd="0.02",
            usage={"input_tokens": 400, "cache_read_tokens": 100, "output_tokens": 80},
        ),
        call("gpt-4o", "openai", status="error", usage={"input_tokens": 7, "output_tokens": 0}),
        call(
            "acme-large-2",
            "acme",
            agent_id="planner",
            usage={"input_tokens": 10, "output_tokens": 5},
        ),
        {"call": {"usage": {"input_tokens": -1}}},  # refused: an ingest failure
    ]


@pytest.fixture(scope="module")
def live_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    """A real Prometheus scraping a real ``llmledger serve`` that is fed calls between scrapes,
    so every counter grows while Prometheus watches."""
    workdir = tmp_path_factory.mktemp("live")
    with (
        ServerProcess(f"sqlite:///{workdir / 'ledger.db'}", log=workdir / "server.log") as server,
        PrometheusProcess(workdir, target=server.url.removeprefix("http://")) as prom,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        for number in range(6):
            assert client.post("/v1/calls", json={"items": _round(number)}).status_code == 200
            run = client.post("/v1/runs", json={"kind": "task", "name": f"t{number}"}).json()
            status = "failed" if number % 2 else "succeeded"
            client.post(f"/v1/runs/{run['run']['id']}/finish", json={"status": status})
            prom.wait_for_scrapes(number + 2)
        yield prom


@pytest.mark.parametrize(("where", "expr"), _targets(), ids=[where for where, _ in _targets()])
def test_every_panel_query_returns_data_from_a_live_server(
    live_prometheus: PrometheusProcess, where: str, expr: str
) -> None:
    answer = live_prometheus.query(expr)
    assert answer["status"] == "success", f"{where}: {answer}"
    result = answer["data"]["result"]
    assert result, f"{where}: no data for {expr}"
    # A route with no request in the window has no quantile (NaN): some series must have one.
    assert any(not math.isnan(float(s["value"][1])) for s in result), f"{where}: {result}"
