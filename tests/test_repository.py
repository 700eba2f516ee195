"""The repository on SQLite and on the real PostgreSQL: idempotent calls, run trees with own and
inclusive usage, status events, and bad input refused with the store unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal

import pytest

from llmledger import Call, Usage, UsageError
from llmledger.store import Repository, open_repository


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repository = open_repository(db_url)
    yield repository
    repository.engine.dispose()


def _call(key: str, **usage: int | None) -> Call:
    return Call(Usage(**usage), source="test", model="m", dedupe_key=key)


def test_the_same_call_twice_is_one_row(repo: Repository) -> None:
    call = _call("msg_1:req_1", input_tokens=10, output_tokens=5)
    assert repo.add_calls([call]) == 1
    assert repo.add_calls([call]) == 0
    assert repo.counts()["calls"] == 1


def test_disagreeing_copies_keep_the_larger(repo: Repository) -> None:
    run = repo.create_run("session")
    partial = _call("msg_1:req_1", input_tokens=10, output_tokens=3)
    final = _call("msg_1:req_1", input_tokens=10, output_tokens=159)
    repo.add_calls([partial], run_id=run)
    repo.add_calls([final], run_id=run)
    repo.add_calls([partial], run_id=run)  # an older snapshot arriving late changes nothing
    totals = repo.run_usage(run)["m"]
    assert totals.calls == 1
    assert totals.usage.output_tokens == 159


def test_larger_copy_keeps_the_run_it_was_first_filed_under(repo: Repository) -> None:
    first = repo.create_run("session", key="s1")
    second = repo.create_run("session", key="s2")
    repo.add_calls([_call("k", input_tokens=1, output_tokens=1)], run_id=first)
    repo.add_calls([_call("k", input_tokens=1, output_tokens=9)], run_id=second)
    assert repo.run_usage(first)["m"].usage.output_tokens == 9
    assert repo.run_usage(second) == {}


def test_three_level_tree_own_and_inclusive_usage(repo: Repository) -> None:
    plan = repo.create_run("plan", name="p")
    task = repo.create_run("task", parent_id=plan, key="1.1")
    attempt1 = repo.create_run("attempt", parent_id=task, attempt=1)
    attempt2 = repo.create_run("attempt", parent_id=task, attempt=2)
    repo.add_calls(
        [
            dataclasses.replace(
                _call("a1", input_tokens=100, output_tokens=10), reported_cost_usd=Decimal("0.25")
            )
        ],
        run_id=attempt1,
    )
    repo.add_calls([_call("a2", input_tokens=50, cache_read_tokens=0)], run_id=attempt2)
    repo.add_calls([_call("t", output_tokens=7)], run_id=task)

    own_task = repo.run_usage(task)["m"]
    assert own_task.usage == Usage(output_tokens=7)
    assert own_task.cost_usd is None
    assert own_task.unpriced_calls == 1

    inclusive = repo.run_usage(plan, inclusive=True)["m"]
    assert inclusive.calls == 3
    assert inclusive.usage.input_tokens == 150
    assert inclusive.usage.output_tokens == 17
    assert inclusive.usage.cache_read_tokens == 0  # reported as zero once: not None
    assert inclusive.usage.cache_write_tokens is None  # never reported: stays None
    assert inclusive.cost_usd == Decimal("0.25")
    assert inclusive.unpriced_calls == 2
    assert repo.run_usage(plan) == {}

    rollup = repo.finalize_run(plan, "succeeded")
    assert rollup.usage == inclusive.usage
    row = repo.get_run(plan)
    assert row is not None
    assert row["status"] == "succeeded"
    assert row["input_tokens"] == 150
    assert row["cache_write_tokens"] is None
    assert row["call_count"] == 3
    assert row["duration_ms"] is not None
    assert row["duration_ms"] >= 0


def test_usage_by_model(repo: Repository) -> None:
    run = repo.create_run("task")
    repo.add_calls(
        [
            dataclasses.replace(_call("x", input_tokens=1), model="a"),
            dataclasses.replace(_call("y", input_tokens=2), model="b"),
            dataclasses.replace(_call("z", input_tokens=3), model=None),
        ],
        run_id=run,
    )
    by_model = repo.run_usage(run)
    assert {k: v.usage.input_tokens for k, v in by_model.items()} == {"a": 1, "b": 2, None: 3}


def test_status_events(repo: Repository) -> None:
    task = repo.create_run("task", key="T-1")
    repo.add_status_event("in_progress", run_id=task, task_key="T-1", from_status="todo")
    repo.add_status_event("done", run_id=task, task_key="T-1", from_status="in_progress")
    assert repo.counts()["task_status_events"] == 2
    with pytest.raises(UsageError) as info:
        repo.add_status_event("done")
    assert info.value.field == "task_key"


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (dataclasses.replace(_call("ok2"), dedupe_key=None), "dedupe_key"),
        (dataclasses.replace(_call("ok2"), status="weird"), "status"),  # type: ignore[arg-type]
        (dataclasses.replace(_call("ok2"), reported_cost_usd=Decimal("-1")), "cost_usd"),
    ],
)
def test_bad_call_is_refused_and_nothing_is_written(
    repo: Repository, bad: Call, field: str
) -> None:
    with pytest.raises(UsageError) as info:
        repo.add_calls([_call("ok1", input_tokens=1), bad])
    assert info.value.field == field
    assert repo.counts()["calls"] == 0


def test_negative_count_is_refused_before_it_reaches_the_store() -> None:
    with pytest.raises(UsageError) as info:
        _call("neg", input_tokens=-5)
    assert info.value.field == "input_tokens"


def test_unknown_run_status_is_refused_and_the_run_unchanged(repo: Repository) -> None:
    run = repo.create_run("task")
    with pytest.raises(UsageError) as info:
        repo.finalize_run(run, "finished-ish")
    assert info.value.field == "status"
    row = repo.get_run(run)
    assert row is not None
    assert row["status"] == "running"


def test_unknown_parent_is_refused(repo: Repository) -> None:
    with pytest.raises(UsageError) as info:
        repo.create_run("task", parent_id="nope")
    assert info.value.field == "parent_id"
    assert repo.counts()["runs"] == 0


def test_every_column_round_trips(repo: Repository) -> None:
    from datetime import UTC, datetime

    from sqlalchemy import select

    from llmledger.store.schema import calls

    started = datetime(2026, 3, 1, 22, 38, 51, 902000, tzinfo=UTC)
    call = dataclasses.replace(
        _call("rt", input_tokens=1, cache_write_tokens=3, cache_write_1h_tokens=3),
        reported_cost_usd=Decimal("0.000000123456"),
        started_at=started,
        metadata={"is_sidechain": True, "nested": [1, "x"]},
        session_id="s-1",
        project="/home/dev/pager",
    )
    repo.add_calls([call])
    with repo.engine.connect() as conn:
        row = conn.execute(select(calls)).mappings().one()
    assert row["started_at"] == started
    assert row["cost_usd"] == Decimal("0.000000123456")
    assert row["cost_status"] == "reported"
    assert row["metadata"] == {"is_sidechain": True, "nested": [1, "x"]}
    assert row["cache_write_1h_tokens"] == 3
    assert row["cache_write_5m_tokens"] is None
    assert (row["session_id"], row["project"]) == ("s-1", "/home/dev/pager")


def test_values_written_into_the_sql_are_stored_as_given(repo: Repository) -> None:
    # A bulk writer may put the values every row shares in its SQL instead of binding them:
    # quotes and percent signs (psycopg's parameter mark) must come through as written.
    from llmledger.store.repository import driver_executemany, raw_insert_sql

    fixed = (("source", "it's 100% test"), ("recorded_at", 1_700_000_000_000_000))
    fixed += (("model", None), ("provider", "p"))
    columns = ["dedupe_key", "cost_status", "status", "token_provenance"]
    with repo.engine.begin() as conn:
        sql = raw_insert_sql(conn.dialect.name, columns, fixed)
        rows = [("k1", "computed", "ok", "reported"), ("k2", "unpriced", "error", "estimated")]
        assert driver_executemany(conn, sql, rows) == 2
        stored = conn.exec_driver_sql(
            "SELECT dedupe_key, cost_status, status, token_provenance, source, recorded_at,"
            " model, provider FROM calls ORDER BY dedupe_key"
        ).all()
    assert [tuple(r) for r in stored] == [
        (*row, "it's 100% test", 1_700_000_000_000_000, None, "p") for row in rows
    ]
    with pytest.raises(TypeError, match="no SQL literal"):
        raw_insert_sql("sqlite", columns, (("cost_usd", 1.5),))
