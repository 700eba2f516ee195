"""Subagents, branches and directories as call attributes (issue 20), on a Claude Code tree
with a parent transcript, a subagent's own transcript (and its ``.meta.json``), a compaction
agent, a legacy ``agent-*.jsonl`` beside its parent, and a second project
(``tests/fixtures/claude-subagents``): each call's subagent, type, branch and cwd; what each
subagent cost inside its session, whose total still includes it; a call written both in the
parent (a ``progress`` line) and in the subagent's file counted once, in either import order;
``--branch`` on every report and the ``branch``/``cwd``/``subagent`` group-bys on SQLite and
the real PostgreSQL; ``daily --by-project`` rows adding up to each period.

The tree's numbers (sonnet-4: $3 / $15 per million input / output; 3.5 haiku: $0.80 / $4):

| call | session | subagent (type) | branch | in / out | cost |
|---|---|---|---|---|---|
| P1 | S1 | main | main | 1000 / 100 | 0.0045 |
| P2 (two lines) | S1 | main | feature/login | 2000 / 200 | 0.009 |
| S1 (file + progress) | S1 | a1b2c3d (Explore) | feature/login | 10000 / 1000 | 0.012 |
| S2 | S1 | a1b2c3d (Explore) | feature/login | 5000 / 500 | 0.006 |
| C1 | S1 | acompact-9f8e | feature/login | 3000 / 300 | 0.0135 |
| B1 | S2 | main | main | 1000 / 100 | 0.0045 |
| L1 | S2 | 0ld1d (legacy file) | main | 2000 / 200 | 0.0024 |
| L2 (no agentId) | S2 | 0ld1d (its file's name) | none | 1000 / 100 | 0.0012 |
| D1 | S3 (delta) | main | dev | 100 / 10 | 0.00045 |

A sidechain replay of P1 in the subagent's file (another request id) counts for the parent.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from llmledger import store
from llmledger.cli import app
from llmledger.cli._app import _register_commands
from llmledger.imports import discover, import_logs
from llmledger.imports.read import ReadTask, read_file
from llmledger.reports import Filters, group_tokens, period_report, sessions_report
from llmledger.store import Repository, open_repository

runner = CliRunner()

S1 = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
S2 = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
S3 = "cccccccc-3333-4333-8333-cccccccccccc"
GAMMA, DELTA = "-home-dev-gamma", "-home-dev-delta"
G, W, D = "/home/dev/gamma", "/home/dev/gamma/web", "/home/dev/delta"

#: message id -> (session, subagent, type, branch, cwd, input, output, cost)
CALLS: dict[str, tuple[Any, ...]] = {
    "msg_P1": (S1, None, None, "main", G, 1000, 100, "0.0045"),
    "msg_P2": (S1, None, None, "feature/login", G, 2000, 200, "0.009"),
    "msg_S1": (S1, "a1b2c3d", "Explore", "feature/login", G, 10000, 1000, "0.012"),
    "msg_S2": (S1, "a1b2c3d", "Explore", "feature/login", G, 5000, 500, "0.006"),
    "msg_C1": (S1, "acompact-9f8e", None, "feature/login", G, 3000, 300, "0.0135"),
    "msg_B1": (S2, None, None, "main", W, 1000, 100, "0.0045"),
    "msg_L1": (S2, "0ld1d", None, "main", W, 2000, 200, "0.0024"),
    "msg_L2": (S2, "0ld1d", None, None, W, 1000, 100, "0.0012"),
    "msg_D1": (S3, None, None, "dev", D, 100, 10, "0.00045"),
}


def _tokens(*, where: Any = lambda c: True) -> int:
    return sum(c[5] + c[6] for c in CALLS.values() if where(c))


def _cost(*, where: Any = lambda c: True) -> Decimal:
    return sum((Decimal(c[7]) for c in CALLS.values() if where(c)), Decimal(0))


@pytest.fixture
def tree(fixtures_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tree (a test may add to it)."""
    target = tmp_path / "claude"
    shutil.copytree(fixtures_dir / "claude-subagents", target)
    return target


def _import(url: str, *paths: Path) -> None:
    repo = open_repository(url)
    try:
        import_logs(repo, ["claude"], list(paths), workers=1)
    finally:
        repo.engine.dispose()


@pytest.fixture
def ledger(db_url: str, tree: Path) -> str:
    _import(db_url, tree)
    return db_url


@pytest.fixture(autouse=True)
def _close_cli_ledgers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A report command leaves its ledger to the end of its process; here the test closes it.
    opened: list[Repository] = []

    def open_and_keep(url: str | None = None, *, migrate: bool = True) -> Repository:
        repo = open_repository(url, migrate=migrate)
        opened.append(repo)
        return repo

    monkeypatch.setattr(store, "open_repository", open_and_keep)
    yield
    for repo in opened:
        repo.engine.dispose()


def _stored(url: str) -> dict[str, tuple[Any, ...]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT message_id, session_id, subagent, subagent_type, branch, cwd, "
                    "input_tokens, output_tokens, cost_usd, agent_id, project FROM calls"
                )
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == len({r[0] for r in rows}), "a message stored twice"
    return {r[0]: tuple(r[1:]) for r in rows}


def _invoke(ledger: str, *args: str) -> Any:
    _register_commands([args[0]])
    return runner.invoke(
        app, [*args, "--tz", "UTC", "--no-import", "--db", ledger], env={"COLUMNS": "250"}
    )


def _report(ledger: str, *args: str) -> dict[str, Any]:
    result = _invoke(ledger, *args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = orjson.loads(result.stdout)
    if "blocks" in document:  # the blocks' sum, as the other reports' totals
        blocks = [b for b in document["blocks"] if not b["is_gap"]]
        document["totals"] = {
            name: sum(b[name] for b in blocks if b[name] is not None) or None
            for name in ("total_tokens", "cost_usd", "calls")
        }
    return document


def _money(value: float | None) -> Decimal:
    return Decimal(str(value or 0))


# -- what each call is filed under ---------------------------------------------------------------


def _expected_rows() -> dict[str, tuple[Any, ...]]:
    return {
        mid: (
            c[0],
            *c[1:5],
            c[5],
            c[6],
            int(Decimal(c[7]) * 10**12),
            "claude-code",
            DELTA if c[0] == S3 else GAMMA,
        )
        for mid, c in CALLS.items()
    }


def test_each_call_is_filed_under_its_session_subagent_branch_and_cwd(ledger: str) -> None:
    # One row per message: the progress echo of msg_S1 and the subagent's replay of msg_P1
    # (another request id) are copies; the subagent's calls carry the parent's session; the
    # agent is claude-code for all of them.
    assert _stored(ledger) == _expected_rows()


def test_the_subagent_files_first_then_the_tree_store_the_same_rows(
    db_url: str, tree: Path
) -> None:
    # The replay of msg_P1 and the subagent's msg_S1 met before their parent's copies.
    _import(db_url, tree / "projects" / GAMMA / S1 / "subagents", tree / "projects" / GAMMA)
    _import(db_url, tree)
    assert _stored(db_url) == _expected_rows()


def test_importing_again_adds_nothing_and_a_new_subagent_line_adds_one_call(
    ledger: str, tree: Path
) -> None:
    _import(ledger, tree)
    assert _stored(ledger) == _expected_rows()
    line = orjson.dumps(
        {
            "isSidechain": True,
            "sessionId": S1,
            "agentId": "a1b2c3d",
            "cwd": G,
            "gitBranch": "feature/login",
            "type": "assistant",
            "timestamp": "2026-11-20T09:11:40.000Z",
            "requestId": "req_S3",
            "message": {
                "id": "msg_S3",
                "model": "claude-3-5-haiku-20241022",
                "usage": {"input_tokens": 100, "output_tokens": 10},
            },
        }
    )
    subagent = tree / "projects" / GAMMA / S1 / "subagents" / "agent-a1b2c3d.jsonl"
    with subagent.open("ab") as fh:
        fh.write(line + b"\n")
    _import(ledger, tree)
    stored = _stored(ledger)
    assert stored.pop("msg_S3")[:4] == (S1, "a1b2c3d", "Explore", "feature/login")
    assert stored == _expected_rows()


def test_the_fast_paths_read_the_same_attributes(tree: Path) -> None:
    # The typed structs and the dict path build the same rows from every file of the tree.
    for found in discover(["claude"], [tree]):
        task = ReadTask(
            found.path,
            "claude",
            Path(found.path).stat().st_size,
            session_id=found.session_id,
            project=found.project,
            share_columns=False,
        )
        assert read_file(task).rows == read_file(task, _typed=False).rows, found.path


# -- subagents ---------------------------------------------------------------------------------


def test_a_sessions_total_includes_its_subagents_and_each_one_is_priced(ledger: str) -> None:
    rows = {r["session_id"]: r for r in _report(ledger, "sessions")["rows"]}
    assert set(rows) == {S1, S2, S3}
    for sid, row in rows.items():
        assert row["total_tokens"] == _tokens(where=lambda c, sid=sid: c[0] == sid)
        assert _money(row["cost_usd"]) == _cost(where=lambda c, sid=sid: c[0] == sid)
        agents = row["agents"]
        # The main thread and the subagents add up to the session.
        assert sum(a["total_tokens"] for a in agents) == row["total_tokens"]
        assert sum(a["calls"] for a in agents) == row["calls"]
        assert sum(_money(a["cost_usd"]) for a in agents) == _money(row["cost_usd"])
    got = [
        (a["subagent"], a["subagent_type"], a["total_tokens"], _money(a["cost_usd"]), a["calls"])
        for a in rows[S1]["agents"]
    ]
    assert got == [
        (None, None, 3300, Decimal("0.0135"), 2),
        ("a1b2c3d", "Explore", 16500, Decimal("0.018"), 2),
        ("acompact-9f8e", None, 3300, Decimal("0.0135"), 1),
    ]
    assert [(a["subagent"], a["total_tokens"]) for a in rows[S2]["agents"]] == [
        (None, 1100),
        ("0ld1d", 3300),
    ]
    assert [a["subagent"] for a in rows[S3]["agents"]] == [None]


def test_sessions_breakdown_agent_prints_each_subagent(ledger: str) -> None:
    result = _invoke(ledger, "sessions", "--breakdown", "agent")
    assert result.exit_code == 0, result.output
    assert "Explore a1b2c3d" in result.stdout
    assert "(main)" in result.stdout
    assert "acompact-9f8e" in result.stdout
    by_model = _invoke(ledger, "sessions", "--breakdown")
    assert by_model.exit_code == 0, by_model.output
    assert "Explore" not in by_model.stdout
    assert "3-5-haiku" in by_model.stdout
    wrong = _invoke(ledger, "sessions", "--breakdown", "subagent")
    assert wrong.exit_code == 2
    assert "--breakdown agent" in wrong.output


def test_tokens_by_subagent_and_type(ledger: str) -> None:
    document = _report(ledger, "tokens", "--group-by", "subagent,subagent_type")
    got = {
        (r["subagent"], r["subagent_type"]): (r["total_tokens"], _money(r["cost_usd"]))
        for r in document["rows"]
    }
    assert got == {
        (None, None): (4510, Decimal("0.01845")),
        ("a1b2c3d", "Explore"): (16500, Decimal("0.018")),
        ("acompact-9f8e", None): (3300, Decimal("0.0135")),
        ("0ld1d", None): (3300, Decimal("0.0036")),
    }
    assert document["totals"]["total_tokens"] == _tokens()
    by_type = _report(ledger, "tokens", "-g", "subagent_type", "--branch", "feature/login")
    assert {r["subagent_type"]: r["total_tokens"] for r in by_type["rows"]} == {
        "Explore": 16500,
        None: 5500,
    }


# -- branches and directories ------------------------------------------------------------------


def _on(*branches: str | None) -> Any:
    return lambda c: c[3] in branches


@pytest.mark.parametrize("report", ["daily", "weekly", "monthly", "sessions", "blocks", "tokens"])
@pytest.mark.parametrize("branches", [("main",), ("feature/login",), ("main", "dev"), ("gone",)])
def test_each_report_counts_only_the_branches_asked_for(
    ledger: str, report: str, branches: tuple[str, ...]
) -> None:
    args = [arg for branch in branches for arg in ("--branch", branch)]
    totals = _report(ledger, report, *args)["totals"]
    assert (totals["total_tokens"] or 0) == _tokens(where=_on(*branches))
    assert (totals["calls"] or 0) == sum(1 for c in CALLS.values() if c[3] in branches)
    assert _money(totals["cost_usd"]) == _cost(where=_on(*branches))


def test_tokens_by_branch_and_cwd(ledger: str) -> None:
    document = _report(ledger, "tokens", "--group-by", "branch,cwd")
    got = {(r["branch"], r["cwd"]): r["total_tokens"] for r in document["rows"]}
    assert got == {
        ("feature/login", G): 22000,
        ("main", G): 1100,
        ("main", W): 3300,
        (None, W): 1100,
        ("dev", D): 110,
    }
    one = _report(ledger, "tokens", "-g", "cwd", "--branch", "main", "--project", GAMMA)
    assert {r["cwd"]: r["total_tokens"] for r in one["rows"]} == {G: 1100, W: 3300}


def test_the_library_filters_by_branch(ledger: str) -> None:
    repo = open_repository(ledger)
    try:
        only = Filters(branches=("feature/login",))
        (row,) = period_report(repo, "monthly", filters=only)
        assert row.totals.usage.total_tokens == 22000
        (session,) = sessions_report(repo, filters=only)
        assert session.session_id == S1
        assert session.agents[("a1b2c3d", "Explore")].usage.total_tokens == 16500
        groups = group_tokens(repo, ["branch"], filters=Filters(branches=("main", "dev")))
        assert {g.key["branch"]: g.totals.calls for g in groups} == {"main": 3, "dev": 1}
    finally:
        repo.engine.dispose()


# -- daily --by-project --------------------------------------------------------------------------


@pytest.mark.parametrize("report", ["daily", "weekly", "monthly"])
def test_by_project_rows_add_up_to_each_period(ledger: str, report: str) -> None:
    plain = _report(ledger, report)
    split = _report(ledger, report, "--by-project")
    assert split["totals"] == plain["totals"]
    for row in plain["rows"]:
        parts = [r for r in split["rows"] if r["period"] == row["period"]]
        assert parts, row["period"]
        for name in ("total_tokens", "input_tokens", "output_tokens", "calls"):
            assert sum(p[name] for p in parts) == row[name], (row["period"], name)
        assert sum(_money(p["cost_usd"]) for p in parts) == _money(row["cost_usd"])
    assert all(set(r) - {"project"} == set(plain["rows"][0]) for r in split["rows"])


def test_daily_by_project_rows(ledger: str) -> None:
    rows = _report(ledger, "daily", "--by-project")["rows"]
    got = [(r["period"], r["project"], r["total_tokens"], r["models"]) for r in rows]
    assert got == [
        ("2026-11-20", DELTA, 110, ["claude-sonnet-4-20250514"]),
        ("2026-11-20", GAMMA, 23100, ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"]),
        ("2026-11-21", GAMMA, 4400, ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"]),
    ]
    assert list(rows[0])[:2] == ["period", "project"]
    on_main = _report(ledger, "daily", "--by-project", "--branch", "main")["rows"]
    assert [(r["period"], r["project"], r["total_tokens"]) for r in on_main] == [
        ("2026-11-20", GAMMA, 1100),
        ("2026-11-21", GAMMA, 3300),
    ]
    table = _invoke(ledger, "daily", "--by-project")
    assert table.exit_code == 0, table.output
    assert "Project" in table.stdout
    assert DELTA in table.stdout


# -- Codex ---------------------------------------------------------------------------------------


def test_codex_calls_carry_the_rollouts_cwd_and_git_branch(
    sqlite_url: str, fixtures_dir: Path
) -> None:
    repo = open_repository(sqlite_url)
    try:
        import_logs(repo, ["codex"], [fixtures_dir / "codex"], workers=1)
    finally:
        repo.engine.dispose()
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            query = (
                "SELECT branch, cwd, subagent, agent_id, COUNT(*) FROM calls GROUP BY 1, 2, 3, 4"
            )
            found = [tuple(r) for r in conn.execute(sa.text(query))]
    finally:
        engine.dispose()
    assert [r[:4] for r in found] == [("main", "/home/dev/api", None, "codex")]
    assert found[0][4] > 1


# -- the service answers the same ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "path", "params"),
    [
        (["daily", "--by-project"], "daily", {"by_project": True}),
        (["weekly", "--branch", "main"], "weekly", {"branch": "main"}),
        (
            ["monthly", "--by-project", "--branch", "dev"],
            "monthly",
            {"by_project": 1, "branch": "dev"},
        ),
        (["sessions", "--branch", "feature/login"], "sessions", {"branch": "feature/login"}),
        (["blocks", "--branch", "main"], "blocks", {"branch": "main"}),
        (
            ["tokens", "-g", "subagent,subagent_type,cwd"],
            "tokens",
            {"group_by": "subagent,subagent_type,cwd"},
        ),
        (
            ["tokens", "-g", "branch", "--branch", "main", "--branch", "dev"],
            "tokens",
            {"group_by": "branch", "branch": ["main", "dev"]},
        ),
    ],
)
def test_the_service_answers_as_the_cli(
    ledger: str, args: list[str], path: str, params: dict[str, Any]
) -> None:
    from fastapi.testclient import TestClient

    from llmledger.api import create_app

    cli = _report(ledger, *args)
    if path == "blocks":
        del cli["totals"]  # added by _report
    with TestClient(create_app(ledger, no_auth=True)) as api:
        response = api.get(f"/v1/reports/{path}", params={"tz": "UTC", **params})
    assert response.status_code == 200, response.text
    assert response.json() == cli
