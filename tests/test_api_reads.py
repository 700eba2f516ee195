"""The service's reads return the CLI's ``--json`` for the same question, on SQLite and on the
real PostgreSQL: show, runs, the period/sessions/blocks reports and tokens, each with the
CLI's filters as query parameters (parsed JSON compared). The usage of a workflow, a task and
an agent adds up to what ``show`` and ``tokens`` say. Bad parameters are a 422 naming them;
an unknown run, workflow, task or agent a 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from llmledger import Usage, store
from llmledger.api import create_app
from llmledger.call import Call
from llmledger.cli import app as cli_app
from llmledger.cli._app import _register_commands
from llmledger.keys import create_key
from llmledger.ledger import Ledger
from llmledger.store import Repository, open_repository
from llmledger.totals import JSON_FIELDS

_register_commands()
_runner = CliRunner()

# Calls well in the past: no block is active, so the blocks report does not move with "now".
_DAY = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=20)
_SONNET = "claude-sonnet-4-20250514"


def _call(at: datetime, **fields: Any) -> Call:
    usage = fields.pop("usage", Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=50))
    return Call(usage=usage, started_at=at, **fields)


def _fill(url: str) -> None:
    """Two nightly workflow runs (each a task 1.1 with a failed and a retried attempt, and a
    call of the workflow's own), a codex task, and imported-like calls with no run."""
    with Ledger(url) as ledger:
        for night in range(2):
            at = _DAY + timedelta(days=night)
            with ledger.run("workflow", "Nightly", key="nightly", agent="claude-code") as flow:
                ledger.record(_call(at, source="api", model=_SONNET))
                with ledger.run("task", "Lint", key="1.1") as task:
                    for n in (1, 2):
                        try:
                            with task.attempt():
                                ledger.record(
                                    _call(at + timedelta(hours=n), source="api", model=_SONNET)
                                )
                                ledger.record(
                                    _call(
                                        at + timedelta(hours=n, minutes=5),
                                        source="api",
                                        model="gpt-4o",
                                        agent_id="helper",
                                    )
                                )
                                if n == 1:
                                    raise RuntimeError("first attempt fails")
                        except RuntimeError:
                            pass
            assert flow.id
        with ledger.run("task", "Docs", key="2.1", agent="codex"):
            ledger.record(
                _call(_DAY + timedelta(days=2, hours=3), source="codex_exec_json", model="gpt-5"),
                cost_usd="0.25",
            )
            ledger.record(
                _call(_DAY + timedelta(days=2, hours=4), source="api", model="no-such-model")
            )
        for n in range(4):
            ledger.record(
                Call(
                    usage=Usage(input_tokens=10 * (n + 1), output_tokens=5, cache_write_tokens=7),
                    source="claude_code_transcript",
                    model=_SONNET,
                    session_id=f"s-{n % 2}",
                    project="-home-dev-alpha" if n < 3 else "-home-dev-beta",
                    agent_id="claude-code",
                    started_at=_DAY + timedelta(days=n % 3, hours=12 + n),
                    reported_cost_usd=Decimal("0.01") if n == 0 else None,
                    dedupe_key=f"log-{n}",
                )
            )


@pytest.fixture(autouse=True)
def _close_cli_ledgers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A report command leaves its ledger to the end of its process; in this one, the test
    # closes it (PostgreSQL connections left to the garbage collector warn).
    opened: list[Repository] = []

    def open_and_keep(url: str | None = None, *, migrate: bool = True) -> Repository:
        repo = open_repository(url, migrate=migrate)
        opened.append(repo)
        return repo

    monkeypatch.setattr(store, "open_repository", open_and_keep)
    yield
    for repo in opened:
        repo.engine.dispose()


@pytest.fixture
def ledger_url(db_url: str) -> str:
    _fill(db_url)
    return db_url


@pytest.fixture
def api(ledger_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(ledger_url, no_auth=True)) as client:
        yield client


def _cli(url: str, *args: str) -> Any:
    result = _runner.invoke(cli_app, [*args, "--db", url, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _get(api: TestClient, path: str, params: Any = None) -> Any:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def _runs(url: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = _cli(url, "runs", "--limit", "100")["runs"]
    return runs


def test_show_equals_the_cli(ledger_url: str, api: TestClient) -> None:
    flow_id = next(r["id"] for r in _runs(ledger_url) if r["kind"] == "workflow")
    for ref in ("nightly", "1.1", "Docs", flow_id, flow_id[:6]):
        document = _get(api, f"/v1/runs/{ref}")
        assert document == _cli(ledger_url, "show", ref)
    tree = _get(api, "/v1/runs/nightly")["run"]
    # The newest nightly run: its own call, and the task's two attempts under it.
    assert tree["own"]["calls"] == 1
    assert tree["inclusive"]["calls"] == 5
    assert tree["children"][0]["attempts"] == 2


def test_runs_equals_the_cli_for_each_filter(ledger_url: str, api: TestClient) -> None:
    questions: list[tuple[list[str], dict[str, Any]]] = [
        ([], {}),
        (["--kind", "task"], {"kind": "task"}),
        (["--status", "failed"], {"status": "failed"}),
        (["--agent", "codex"], {"agent": "codex"}),
        (["--top"], {"top": "true"}),
        (["--limit", "3"], {"limit": 3}),
        (["--since", "1d", "--tz", "UTC"], {"since": "1d", "tz": "UTC"}),
        (["--until", "2000-01-01", "--tz", "UTC"], {"until": "2000-01-01", "tz": "UTC"}),
        (
            ["--kind", "attempt", "--status", "succeeded"],
            {"kind": "attempt", "status": "succeeded"},
        ),
    ]
    for args, params in questions:
        assert _get(api, "/v1/runs", params) == _cli(ledger_url, "runs", *args), args
    assert len(_get(api, "/v1/runs", {"kind": "task"})["runs"]) == 3
    assert _get(api, "/v1/runs", {"until": "2000-01-01"})["runs"] == []


#: (CLI options, query parameters) of the same report questions.
_FILTERS: list[tuple[list[str], dict[str, Any]]] = [
    ([], {}),
    (["--since", _DAY.date().isoformat()], {"since": _DAY.date().isoformat()}),
    (["--until", _DAY.date().isoformat()], {"until": _DAY.date().isoformat()}),
    (["--source", "claude"], {"source": "claude"}),
    (["--source", "api", "--source", "codex"], {"source": ["api", "codex"]}),
    (["--project", "-home-dev-alpha"], {"project": "-home-dev-alpha"}),
    (["--model", _SONNET, "--model", "gpt-4o"], {"model": [_SONNET, "gpt-4o"]}),
    (["--agent", "helper"], {"agent": "helper"}),
    (["--host", "nowhere"], {"host": "nowhere"}),
    (["--cost", "calculate"], {"cost": "calculate"}),
    (["--cost", "reported"], {"cost": "reported"}),
]


@pytest.mark.parametrize("report", ["daily", "weekly", "monthly", "sessions"])
def test_period_and_sessions_reports_equal_the_cli(
    ledger_url: str, api: TestClient, report: str
) -> None:
    for args, params in _FILTERS:
        cli = _cli(ledger_url, report, "--no-import", "--tz", "UTC", *args)
        served = _get(api, f"/v1/reports/{report}", {"tz": "UTC", **params})
        assert served == cli, (report, args)
    # In another zone the days move; both agree there too.
    zoned = _cli(ledger_url, report, "--no-import", "--tz", "Pacific/Auckland", "--breakdown")
    assert _get(api, f"/v1/reports/{report}", {"tz": "Pacific/Auckland", "breakdown": 1}) == zoned
    assert zoned["totals"]["calls"] == 16


def test_blocks_equal_the_cli(ledger_url: str, api: TestClient) -> None:
    for args, params in [
        *_FILTERS,
        (["--hours", "2.5"], {"hours": 2.5}),
        (["--active"], {"active": True}),
    ]:
        cli = _cli(ledger_url, "blocks", "--no-import", "--tz", "UTC", *args)
        assert _get(api, "/v1/reports/blocks", {"tz": "UTC", **params}) == cli, args
    blocks = _get(api, "/v1/reports/blocks", {"tz": "UTC"})["blocks"]
    assert any(b["is_gap"] for b in blocks)
    assert sum(b["calls"] for b in blocks) == 16


@pytest.mark.parametrize(
    "group_by", ["model", "project,model", "day,agent", "command,job,action", "provider,host"]
)
def test_tokens_equal_the_cli(ledger_url: str, api: TestClient, group_by: str) -> None:
    for args, params in _FILTERS[:6]:
        cli = _cli(ledger_url, "tokens", "--no-import", "--tz", "UTC", "-g", group_by, *args)
        served = _get(api, "/v1/reports/tokens", {"group_by": group_by, "tz": "UTC", **params})
        assert served == cli, (group_by, args)


def _report_totals(totals: dict[str, Any]) -> dict[str, Any]:
    """A show node's totals in the reports' shape."""
    return {name: totals[name] for name in JSON_FIELDS}


def test_workflow_and_task_usage_add_up_their_runs(ledger_url: str, api: TestClient) -> None:
    flows = [r for r in _runs(ledger_url) if r["kind"] == "workflow"]
    trees = [_cli(ledger_url, "show", r["id"])["run"] for r in flows]
    usage = _get(api, "/v1/workflows/nightly/usage")
    assert (usage["subject"], usage["key"], usage["runs"]) == ("workflow", "nightly", 2)
    assert usage["own"]["calls"] == 2
    assert usage["inclusive"]["calls"] == 10
    # One night alone is what show says of that night's run (own and inclusive).
    night = _get(
        api,
        "/v1/workflows/nightly/usage",
        {"since": _DAY.isoformat(), "until": (_DAY + timedelta(hours=23)).isoformat()},
    )
    oldest = min(trees, key=lambda t: t["started_at"])
    assert night["own"] == _report_totals(oldest["own"])
    assert night["inclusive"] == _report_totals(oldest["inclusive"])
    by_model = {m["model"]: m for m in usage["models"]}
    assert set(by_model) == {_SONNET, "gpt-4o"}
    assert by_model["gpt-4o"]["own"]["calls"] == 0
    assert by_model["gpt-4o"]["inclusive"]["calls"] == 4

    task = _get(api, "/v1/tasks/1.1/usage")
    assert (task["runs"], task["own"]["calls"], task["inclusive"]["calls"]) == (2, 0, 8)
    docs = _get(api, "/v1/tasks/2.1/usage")
    assert docs["own"] == _report_totals(_cli(ledger_url, "show", "2.1")["run"]["own"])
    assert docs["own"]["cost_usd"] == 0.25
    assert docs["own"]["unpriced_calls"] == 1


def test_agent_usage_is_its_calls_and_its_runs_subtrees(ledger_url: str, api: TestClient) -> None:
    tokens = _cli(ledger_url, "tokens", "--no-import", "-g", "agent,model")
    rows = [r for r in tokens["rows"] if r["agent"] == "claude-code"]
    usage = _get(api, "/v1/agents/claude-code/usage")
    assert usage["runs"] == 8  # two workflows, two tasks, four attempts
    # Own: the calls that carry the agent id, as tokens --group-by agent,model counts them.
    own = {m["model"]: m["own"] for m in usage["models"] if m["own"]["calls"]}
    assert own == {r["model"]: {k: r[k] for k in JSON_FIELDS} for r in rows}
    # Inclusive adds the helper's calls made inside claude-code's runs.
    assert usage["inclusive"]["calls"] == usage["own"]["calls"] + 4
    helper = _get(api, "/v1/agents/helper/usage")
    assert (helper["runs"], helper["own"]["calls"], helper["inclusive"]["calls"]) == (0, 4, 4)
    codex = _get(api, "/v1/agents/codex/usage", {"cost": "reported"})
    assert codex["own"]["cost_usd"] == 0.25
    assert codex["own"]["unpriced_calls"] == 1


#: (path, query parameters, the parameter a 422 names).
_BAD: list[tuple[str, dict[str, str], str]] = [
    ("/v1/reports/daily", {"since": "yesterday-ish"}, "since"),
    ("/v1/reports/daily", {"until": "soon"}, "until"),
    ("/v1/reports/daily", {"since": "2026-02-01", "until": "2026-01-01"}, "since"),
    ("/v1/reports/weekly", {"tz": "Mars/Olympus"}, "tz"),
    ("/v1/reports/monthly", {"cost": "display"}, "cost"),
    ("/v1/reports/blocks", {"hours": "0"}, "hours"),
    ("/v1/reports/blocks", {"hours": "nan"}, "hours"),
    ("/v1/reports/tokens", {"group_by": "colour"}, "group_by"),
    ("/v1/reports/tokens", {"group_by": ","}, "group_by"),
    ("/v1/runs", {"limit": "0"}, "limit"),
    ("/v1/runs", {"since": "7 days"}, "since"),
    ("/v1/runs", {"tz": "Nowhere/Else"}, "tz"),
    ("/v1/workflows/nightly/usage", {"until": "later"}, "until"),
    ("/v1/agents/codex/usage", {"cost": "free"}, "cost"),
    ("/v1/reports/sessions", {"model": "a\x00b"}, "model"),
]


def test_a_bad_parameter_is_a_422_naming_it(sqlite_url: str) -> None:
    with TestClient(create_app(sqlite_url, no_auth=True)) as api:
        for path, params, name in _BAD:
            response = api.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text)
            (error,) = response.json()["detail"]
            assert error["loc"] == ["query", name], (path, params)
            assert error["msg"]


def test_an_unknown_run_workflow_task_or_agent_is_a_404(api: TestClient) -> None:
    for path, field in [
        ("/v1/runs/no-such-run", "ref"),
        ("/v1/workflows/weekly/usage", "key"),
        ("/v1/tasks/9.9/usage", "key"),
        ("/v1/agents/nobody/usage", "id"),
    ]:
        response = api.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"].startswith(f"{field}: ")
    # A run type that exists under another kind is not a workflow.
    assert api.get("/v1/workflows/1.1/usage").status_code == 404


def test_reads_need_a_read_or_admin_key(ledger_url: str) -> None:
    repo = open_repository(ledger_url)
    keys = {scope: create_key(repo, scope, scope) for scope in ("ingest", "read", "admin")}
    repo.engine.dispose()
    with TestClient(create_app(ledger_url)) as client:
        assert client.get("/v1/reports/daily").status_code == 401
        for scope, status in (("ingest", 403), ("read", 200), ("admin", 200)):
            headers = {"Authorization": f"Bearer {keys[scope]}"}
            assert client.get("/v1/runs", headers=headers).status_code == status, scope


def test_a_deep_run_tree_is_served_whole(sqlite_url: str) -> None:
    # Deeper than orjson nests (255 levels: two a run); the service answers all the same.
    repo = open_repository(sqlite_url)
    parent = top = repo.create_run("plan", name="deep")
    for _ in range(150):
        parent = repo.create_run("task", parent_id=parent)
    repo.engine.dispose()
    with TestClient(create_app(sqlite_url, no_auth=True)) as api:
        node = _get(api, f"/v1/runs/{top}")["run"]
    depth = 0
    while node["children"]:
        (node,) = node["children"]
        depth += 1
    assert depth == 150
