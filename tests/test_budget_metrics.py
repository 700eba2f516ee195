"""``GET /metrics`` exposes each budget's limit, spent and forecast as gauges."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmledger import Ledger, Usage
from llmledger.api import create_app
from llmledger.budgets import make_budget, set_budget


def _gauges(client: TestClient) -> dict[str, dict[str, float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(response.text):
        if family.name.startswith("llmledger_budget_"):
            assert family.type == "gauge"
            out[family.name] = {s.labels["budget"]: s.value for s in family.samples}
    return out


def test_budget_gauges(db_url: str) -> None:
    with TestClient(create_app(db_url, no_auth=True)) as client:
        assert _gauges(client) == {}  # no budget, no family
        with Ledger(db_url) as ledger:
            set_budget(ledger.repository, make_budget("all", "25"))
            set_budget(ledger.repository, make_budget("today", "10", window="day"))
            ledger.record(Usage(input_tokens=1), model="m", cost_usd="2.5")
        gauges = _gauges(client)
    assert gauges["llmledger_budget_limit_usd"] == {"all": 25.0, "today": 10.0}
    assert gauges["llmledger_budget_spent_usd"] == {"all": 2.5, "today": 2.5}
    # A total budget has no window end, so no forecast; a day has one (>= what it spent).
    assert set(gauges["llmledger_budget_forecast_usd"]) == {"today"}
    assert gauges["llmledger_budget_forecast_usd"]["today"] >= 2.5
