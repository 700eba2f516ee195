"""Status events written through the ledger and the service, and the forecasts read back from
the store, on SQLite and PostgreSQL (hand-computed histories; tests/test_forecast_pure.py has
the arithmetic alone)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from llmledger.api import create_app
from llmledger.forecast.history import load_events
from llmledger.forecast.lanes import DEFAULT_LANES
from llmledger.forecast.report import NoHistory, Settings, eta_report, task_history, velocity_report
from llmledger.ledger import Ledger
from llmledger.store import Repository, open_engine, open_repository, upgrade
from llmledger.store.engine import downgrade
from llmledger.store.schema import runs, task_status_events
from server import ServerProcess

T0 = datetime(2026, 12, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=10)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    with Ledger(db_url) as books:
        yield books


def _write_worked_example(ledger: Ledger) -> None:
    # The example: work 4 h, review 1 h, qa 0.5 h from H (and B's own work visit);
    # A in progress for 1 h, B in review for 2 h, C not started.
    for key, status, hours in [
        ("H", "in_progress", 0),
        ("H", "ready_to_review", 4),
        ("H", "ready_to_qa", 5),
        ("H", "completed", 5.5),
        ("B", "in_progress", 4),
        ("B", "ready_to_review", 8),
        ("C", "todo", 1),
        ("A", "todo", 1),
        ("A", "in_progress", 9),
    ]:
        assert ledger.task_status(key, status, at=at(hours)) is not None
    assert ledger.failures == 0


def test_worked_example_from_the_store(ledger: Ledger) -> None:
    _write_worked_example(ledger)
    report = eta_report(ledger.repository, Settings(DEFAULT_LANES), NOW)
    assert report.eta.finish_at == NOW + timedelta(hours=8.5)
    assert [lane.remaining_hours for lane in report.eta.lanes] == [7.0, 2.0, 1.5]
    document = report.to_dict()
    assert document["finish_at"] == "2026-12-01T18:30:00+00:00"
    assert document["open_tasks"] == 3
    assert document["cost"]["expected_usd"] is None
    assert "no completed task" in document["cost"]["reason"]


def test_from_status_defaults_to_the_status_at_that_time(ledger: Ledger) -> None:
    ledger.task_status("T", "in_progress", at=at(0))
    ledger.task_status("T", "ready_to_qa", at=at(5))
    late = ledger.task_status("T", "ready_to_review", at=at(3))  # written late, in the past
    assert late is not None
    assert (late.from_status, late.warning) == ("in_progress", None)
    events = load_events(ledger.repository, key="T")
    assert [(e.to_status, e.at) for e in events] == [
        ("in_progress", at(0)),
        ("ready_to_review", at(3)),
        ("ready_to_qa", at(5)),
    ]
    lanes = {v.lane: v for v in velocity_report(ledger.repository, Settings(DEFAULT_LANES), NOW)}
    assert (lanes["work"].samples, lanes["work"].mean_hours) == (1, 3.0)
    assert (lanes["review"].samples, lanes["review"].mean_hours) == (1, 2.0)


def test_a_transition_from_another_status_is_stored_with_a_warning(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    first = ledger.task_status("T", "in_progress", from_status="todo", at=at(0))
    assert first is not None
    assert first.warning is None  # an unknown task is created, whatever it says it left
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        odd = ledger.task_status("T", "completed", from_status="ready_to_qa", at=at(1))
    assert odd is not None
    assert odd.stored
    assert odd.warning is not None
    assert "'in_progress'" in odd.warning
    assert "not 'ready_to_qa'" in caplog.text
    assert [e.from_status for e in load_events(ledger.repository, key="T")] == [
        "todo",
        "ready_to_qa",
    ]


def test_a_task_is_its_key_and_project(ledger: Ledger) -> None:
    ledger.task_status("1", "in_progress", project="web", at=at(0))
    other = ledger.task_status("1", "ready_to_review", project="api", at=at(1))
    assert other is not None
    assert other.from_status is None  # task 1 of api is not task 1 of web
    ledger.task_status("1", "ready_to_review", project="web", at=at(2))
    web = velocity_report(ledger.repository, Settings(DEFAULT_LANES, project="web"), NOW)
    assert (web[0].samples, web[0].mean_hours) == (1, 2.0)
    history = task_history(ledger.repository, "1", DEFAULT_LANES, NOW, project="api")
    assert [t.event.to_status for t in history.transitions] == ["ready_to_review"]


def _task_run(repo: Repository, key: str, start: float, end: float, cost: str | None) -> None:
    run_id = repo.create_run("task", key=key, started_at=at(start))
    repo.finalize_run(run_id, "succeeded", finished_at=at(end))
    if cost is not None:
        with repo.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(cost_usd=Decimal(cost)))


def test_task_runs_stand_in_for_work_and_price_the_open_tasks(ledger: Ledger) -> None:
    repo = ledger.repository
    _task_run(repo, "D1", 0, 2, "1.00")
    _task_run(repo, "D2", 0, 4, "3.00")
    _task_run(repo, "D2", 4, 5, "1.00")  # a second run of D2: its cost counts too
    for key in ("D1", "D2"):
        ledger.task_status(key, "ready_to_review", at=at(5))
        ledger.task_status(key, "ready_to_qa", at=at(6))
        ledger.task_status(key, "completed", at=at(6.5))
    ledger.task_status("N", "todo", at=at(7))
    ledger.task_status("M", "todo", at=at(7))
    report = eta_report(repo, Settings(DEFAULT_LANES), NOW)
    work = report.eta.lanes[0].velocity
    # runs: 2 h, 4 h and 1 h -> mean 7/3 h
    assert (work.source, work.samples) == ("runs", 3)
    assert work.velocity_hours == pytest.approx(7 / 3)
    cost = report.cost
    # completed tasks cost $1 and $4: median $2.50, p90 $4; two open tasks
    assert (cost.expected_usd, cost.p90_usd, cost.tasks_priced) == (
        Decimal("5.00"),
        Decimal("8.00"),
        2,
    )


def test_no_events_is_no_history_not_a_zero(ledger: Ledger) -> None:
    with pytest.raises(NoHistory, match=r"no status history yet.*llmledger task status"):
        eta_report(ledger.repository, Settings(DEFAULT_LANES), NOW)
    with pytest.raises(NoHistory):
        velocity_report(ledger.repository, Settings(DEFAULT_LANES), NOW)


def test_backtest_from_the_store(ledger: Ledger) -> None:
    # One lane (work = in_progress -> completed); hand-computed in test_forecast_pure.py:
    # points at +2 (predicted +4, done +8) and +4 (predicted +5, done +8).
    from llmledger.forecast.lanes import parse_lanes

    lanes = parse_lanes({"lanes": [{"name": "work", "from": "in_progress", "to": "completed"}]})
    for key, status, hours in [
        ("T1", "in_progress", 0),
        ("T2", "in_progress", 0),
        ("T1", "completed", 2),
        ("T3", "in_progress", 2),
        ("T2", "completed", 4),
        ("T3", "completed", 8),
    ]:
        ledger.task_status(key, status, at=at(hours))
    report = eta_report(ledger.repository, Settings(lanes), NOW)
    assert report.backtest is not None
    assert [(p.at, p.predicted_at) for p in report.backtest.points] == [
        (at(2), at(4)),
        (at(4), at(5)),
    ]
    assert report.backtest.mape_pct == pytest.approx((75 + 200 / 3) / 2)
    assert report.eta.finish_at is None  # nothing open after +8
    assert report.eta.reason == "no open tasks"


def test_the_service_route_shares_the_writer(db_url: str) -> None:
    with TestClient(create_app(db_url, no_auth=True)) as client:
        first = client.post(
            "/v1/tasks/7/status",
            json={"to_status": "in_progress", "at": "2026-12-01T00:00:00Z", "project": "web"},
        )
        assert first.status_code == 201
        assert "warning" not in first.json()
        odd = client.post(
            "/v1/tasks/7/status",
            json={
                "to_status": "completed",
                "from_status": "ready_to_qa",
                "at": "2026-12-01T01:00:00Z",
                "project": "web",
            },
        )
        assert odd.status_code == 201
        assert "'in_progress'" in odd.json()["warning"]
    repo = open_repository(db_url)
    try:
        with repo.engine.connect() as conn:
            rows = conn.execute(
                select(
                    task_status_events.c.project,
                    task_status_events.c.from_status,
                    task_status_events.c.to_status,
                ).order_by(task_status_events.c.at)
            ).all()
    finally:
        repo.engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("web", None, "in_progress"),
        ("web", "ready_to_qa", "completed"),
    ]


def test_events_at_0007_survive_0010_with_no_project(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        upgrade(engine, "0007")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO task_status_events (task_key, to_status, at) "
                    "VALUES ('k', 'in_progress', 1700000000000000)"
                )
            )
        upgrade(engine)
        with engine.begin() as conn:
            got = conn.execute(sa.text("SELECT task_key, project FROM task_status_events")).all()
        assert [tuple(r) for r in got] == [("k", None)]
        downgrade(engine, "0007")
        columns = {c["name"] for c in sa.inspect(engine).get_columns("task_status_events")}
        assert "project" not in columns
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM task_status_events")).scalar() == 1
    finally:
        engine.dispose()


def test_a_remote_ledger_writes_status_through_the_service(sqlite_url: str, tmp_path: Path) -> None:
    with ServerProcess(sqlite_url, log=tmp_path / "server.log") as server:
        remote = Ledger(server.url, spool=tmp_path / "spool.db")
        try:
            assert remote.task_status("R", "in_progress", at=at(0), project="web") is None
            remote.task_status("R", "ready_to_review", at=at(2), project="web", agent_id="codex")
            assert remote.flush(30)
        finally:
            remote.close()
        repo = open_repository(sqlite_url)
        try:
            events = load_events(repo, project="web", key="R")
        finally:
            repo.engine.dispose()
    # the server filled in from_status: the same writer as a local ledger
    assert [(e.from_status, e.to_status, e.agent_id) for e in events] == [
        (None, "in_progress", None),
        ("in_progress", "ready_to_review", "codex"),
    ]
