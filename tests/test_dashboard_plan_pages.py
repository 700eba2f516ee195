"""The budgets and forecast pages without a browser (the app in-process): both render on an
empty ledger with the help to start ("no budgets yet", "no status history yet"); seeded, the
numbers they show are those of ``GET /v1/budgets`` and ``GET /v1/forecast/*``, which are the
CLI's ``budget status --json``, ``velocity --json`` and ``eta [--backtest] --json``; the
worked example of docs/forecast.md gives its hand-computed ETA; the backtest's error is shown;
the downloads are the API's JSON and a CSV of the same rows; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dashboard_plan_seed import FINISH_AT, LANE_FINISH, NOW, seed_budgets, seed_worked_example
from llmledger.api import create_app
from llmledger.cli._app import _register_commands, app
from llmledger.keys import create_key
from llmledger.store import open_repository

#: Fields of a budget's status that do not move with the clock.
_STEADY = ("limit_usd", "spent_usd", "reserved_usd", "remaining_usd", "used_percent", "calls")


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(db_url, no_auth=True)) as test_client:
        yield test_client


def _cli(*args: str) -> Any:
    _register_commands(list(args[:1]))
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _api(client: TestClient, path: str, params: Any = None) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _budget_fields(html: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    pattern = r'data-budget="([^"]+)" data-field="(\w+)" data-value="([^"]*)"'
    for name, field, value in re.findall(pattern, html):
        found.setdefault(name, {})[field] = value
    return found


def _eta_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-eta="(\w+)" data-value="([^"]*)"', html))


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


# -- empty -------------------------------------------------------------------------------------


def test_empty_ledger_pages_say_how_to_start(client: TestClient) -> None:
    page = client.get("/budgets")
    assert page.status_code == 200
    assert "No budgets yet" in page.text
    assert "llmledger budget set NAME --limit 25 --window day" in page.text
    assert _api(client, "/v1/budgets") == {"budgets": []}
    page = client.get("/forecast")
    assert page.status_code == 200
    assert "No status history yet" in page.text
    assert "llmledger task status KEY in_progress" in page.text
    # The API says the same as the CLI: no history is a 404 with the way out, not a zero.
    for path in ("/v1/forecast/velocity", "/v1/forecast/eta", "/v1/forecast/backtest"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "no status history yet" in response.json()["detail"]
    assert client.get("/forecast", params={"format": "json"}).status_code == 404


def test_both_pages_are_in_the_navigation(client: TestClient) -> None:
    html = client.get("/").text
    assert '<a href="/budgets">Budgets</a>' in html
    assert '<a href="/forecast">Forecast</a>' in html
    assert '<a href="/forecast" aria-current="page">Forecast</a>' in client.get("/forecast").text


# -- budgets -----------------------------------------------------------------------------------


def test_budgets_page_is_the_api_and_the_cli(client: TestClient, db_url: str) -> None:
    seed_budgets(db_url)
    page = client.get("/budgets")
    assert page.status_code == 200, page.text
    shown = _budget_fields(page.text)
    api = {b["name"]: b for b in _api(client, "/v1/budgets")["budgets"]}
    cli = {b["name"]: b for b in _cli("budget", "status", "--json", "--db", db_url)["budgets"]}
    assert set(shown) == set(api) == set(cli) == {"daily", "tiny"}
    for name, fields in shown.items():
        for field in (*_STEADY, "unpriced_calls"):
            assert _number(fields[field]) == api[name][field] == cli[name][field], (name, field)
        for field in ("burn_last_hour_usd_per_hour",):
            assert _number(fields[field]) == api[name][field], (name, field)
    daily = api["daily"]
    assert (daily["spent_usd"], daily["reserved_usd"], daily["remaining_usd"]) == (5.0, 2.0, 18.0)
    assert daily["unpriced_calls"] == 1
    assert shown["daily"]["burn_usd_per_hour"] != ""
    assert _number(shown["daily"]["forecast_usd"]) == pytest.approx(daily["forecast_usd"], rel=1e-3)
    assert "spend this budget cannot see" in page.text  # the unpriced call, said so
    assert f'resets <time datetime="{daily["resets_at"]}">' in page.text
    assert 'style="width: 20.00%"' in page.text  # the daily bar: $5 of $25
    # tiny is over: its overrun is now, its bar full and marked.
    assert api["tiny"]["remaining_usd"] < 0
    assert api["tiny"]["overrun_at"] is not None
    assert 'class="meter over"' in page.text
    assert '<a class="api-link" href="/v1/budgets">' in page.text


def test_budgets_downloads(client: TestClient, db_url: str) -> None:
    seed_budgets(db_url)
    response = client.get("/budgets", params={"format": "json"})
    assert response.headers["content-disposition"] == 'attachment; filename="budgets.json"'
    downloaded = {b["name"]: b for b in response.json()["budgets"]}
    api = {b["name"]: b for b in _api(client, "/v1/budgets")["budgets"]}
    assert set(downloaded) == set(api)
    for name, row in downloaded.items():
        assert set(row) == set(api[name])
        assert {f: row[f] for f in _STEADY} == {f: api[name][f] for f in _STEADY}
    response = client.get("/budgets", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["name"] for r in rows] == ["daily", "tiny"]
    assert rows[0]["scope"] == "agent=claude-code"
    assert (rows[0]["spent_usd"], rows[0]["unpriced_calls"]) == ("5.0", "1")
    assert client.get("/v1/budgets", params={"name": "daily"}).json()["budgets"][0]["name"] == (
        "daily"
    )
    assert client.get("/v1/budgets", params={"name": "nope"}).status_code == 404


# -- forecast ----------------------------------------------------------------------------------


def test_forecast_page_shows_the_worked_example(client: TestClient, db_url: str) -> None:
    seed_worked_example(db_url)
    page = client.get("/forecast", params={"at": NOW})
    assert page.status_code == 200, page.text
    eta = _api(client, "/v1/forecast/eta", {"at": NOW})
    assert eta == _cli("eta", "--at", NOW, "--db", db_url, "--json")
    assert eta["finish_at"] == FINISH_AT  # docs/forecast.md: at + 8.5 h
    shown = _eta_fields(page.text)
    assert shown["finish_at"] == FINISH_AT
    assert int(shown["open_tasks"]) == eta["open_tasks"] == 3
    lanes = re.findall(r'<tr data-lane="(\w+)" data-finish="([^"]*)"', page.text)
    assert lanes == [(lane["lane"], lane["finish_at"]) for lane in eta["lanes"]]
    assert [finish for _, finish in lanes] == LANE_FINISH
    # No priced completed task: the cost is unknown, with its reason, never $0.
    assert shown["expected_usd"] == ""
    assert eta["cost"]["expected_usd"] is None
    assert eta["cost"]["reason"] in page.text
    assert "No backtest yet" in page.text
    velocity = _api(client, "/v1/forecast/velocity", {"at": NOW})
    assert velocity == _cli("velocity", "--at", NOW, "--db", db_url, "--json")
    rows = re.findall(
        r'<tr data-lane="(\w+)" data-samples="(\d+)" data-velocity="([^"]*)"', page.text
    )
    assert rows == [
        (v["lane"], str(v["samples"]), str(v["velocity_hours"])) for v in velocity["lanes"]
    ]
    assert [v["velocity_hours"] for v in velocity["lanes"]] == [4.0, 1.0, 0.5]
    assert '<a class="api-link" href="/v1/forecast/eta?at=2026-12-01T10%3A00Z">' in page.text
    # Downloads: the API's ETA document; the velocity table as CSV.
    assert client.get("/forecast", params={"at": NOW, "format": "json"}).json() == eta
    table = client.get("/forecast", params={"at": NOW, "format": "csv"}).text
    assert [r["lane"] for r in csv.DictReader(io.StringIO(table))] == ["work", "review", "qa"]
    # A project with no events is the empty state, not an error.
    other = client.get("/forecast", params={"at": NOW, "project": "elsewhere"})
    assert other.status_code == 200
    assert "No status history yet" in other.text


def test_forecast_page_shows_the_backtest_error(
    client: TestClient, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/forecast.md's backtest: two past points, -66.7 % and -75 % -> within ±71 %."""
    lanes = tmp_path / "lanes.toml"
    lanes.write_text(
        '[[lanes]]\nname = "work"\nfrom = "in_progress"\nto = "completed"\n', encoding="utf-8"
    )
    monkeypatch.setenv("LLMLEDGER_LANES", str(lanes))  # the service's default lanes
    from llmledger import Ledger
    from llmledger.timespec import parse_instant

    with Ledger(db_url) as ledger:
        for key, status, hour in [
            ("T1", "in_progress", 0),
            ("T2", "in_progress", 0),
            ("T1", "completed", 2),
            ("T3", "in_progress", 2),
            ("T2", "completed", 4),
            ("T3", "completed", 8),
            ("T4", "in_progress", 9),
        ]:
            ledger.task_status(key, status, at=parse_instant(f"2026-12-01T{hour:02d}:00Z"))
    page = client.get("/forecast", params={"at": NOW})
    assert page.status_code == 200, page.text
    backtest = _api(client, "/v1/forecast/backtest", {"at": NOW})
    cli = _cli("eta", "--backtest", "--at", NOW, "--db", db_url, "--json")
    assert backtest == cli
    assert [p["error_pct"] for p in backtest["points"]] == pytest.approx([-200 / 3, -75.0])
    assert "Typically within ±71 % (backtest of 2 past point(s); median bias 71 % early)" in (
        page.text
    )
    errors = [float(e) for e in re.findall(r'<tr data-error="([^"]+)"', page.text)]
    assert errors == [p["error_pct"] for p in backtest["points"]]
    shown = _eta_fields(page.text)
    assert _number(shown["median_abs_error_pct"]) == backtest["median_abs_error_pct"]
    eta = _api(client, "/v1/forecast/eta", {"at": NOW})
    assert eta["backtest"]["median_abs_error_pct"] == backtest["median_abs_error_pct"]


def test_a_bad_moment_is_a_clear_error(client: TestClient) -> None:
    page = client.get("/forecast", params={"at": "yesterday-ish"})
    assert page.status_code == 422
    assert 'role="alert"' in page.text
    response = client.get("/v1/forecast/eta", params={"at": "yesterday-ish"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "at"]


def test_reading_needs_a_read_key_once_keys_exist(db_url: str) -> None:
    repo = open_repository(db_url)
    key = create_key(repo, "reader", "read")
    repo.engine.dispose()
    with TestClient(create_app(db_url)) as anonymous:
        for path in ("/budgets", "/forecast"):
            assert anonymous.get(path).status_code == 401, path
        for path in ("/v1/budgets", "/v1/forecast/eta"):
            assert anonymous.get(path).status_code == 401, path
        reader = {"Authorization": f"Bearer {key}"}
        assert anonymous.get("/budgets", headers=reader).status_code == 200
        assert anonymous.get("/v1/budgets", headers=reader).status_code == 200
