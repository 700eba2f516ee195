"""Migrations: fresh databases reach head with the pinned schema; down and up again works;
rows written at the previous revision survive the upgrade. Every new migration adds a case."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy import inspect

from llmledger.store import current_revision, head_revision, open_engine, upgrade
from llmledger.store.engine import downgrade, ensure_current

TOKENS = [
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
]

# Packed in schema order, the column lists read as the tables do (one a line would be 90 lines).
EXPECTED_COLUMNS = {
    "runs": [
        "id", "parent_id", "root_id", "kind", "name", "key", "status", "attempt",
        "agent_id", "agent_ids", "command_name", "action", "invocation_kind",
        "started_at", "finished_at", "duration_ms", "owner_host", "owner_pid", "metadata",
        *TOKENS, "cost_usd", "unpriced_calls", "call_count",
    ],
    "calls": [
        "id", "dedupe_key", "run_id", "source", "provider", "model", "message_id",
        "request_id", "session_id", "project", "agent_id", "started_at", "finished_at",
        "duration_ms", *TOKENS, "cost_usd", "cost_status", "currency", "price_version",
        "status", "token_provenance", "metadata", "recorded_at", "host", "subagent",
        "subagent_type", "branch", "cwd",
    ],
    "task_status_events": [
        "id", "run_id", "task_key", "from_status", "to_status", "at", "command_name",
        "job", "agent_id", "metadata", "event_id", "project",
    ],
    "import_state": [
        "path", "source", "device", "inode", "size", "mtime_ns", "offset", "head_sha256",
        "lines", "calls", "updated_at",
    ],
    "api_keys": ["name", "scope", "key_hash", "created_at", "revoked_at", "last_used_at"],
    "call_rollup": [
        "bucket", "source", "model", "calls",
        "input_tokens", "input_tokens_known", "cache_read_tokens", "cache_read_tokens_known",
        "cache_write_tokens", "cache_write_tokens_known", "output_tokens",
        "output_tokens_known", "reasoning_tokens", "reasoning_tokens_known",
        "cost_auto", "priced_auto", "cost_reported", "priced_reported", "cost_calculated",
        "priced_calculated",
    ],
    "call_rollup_hour": [
        "hour", "source", "model", "calls",
        "input_tokens", "input_tokens_known", "cache_read_tokens", "cache_read_tokens_known",
        "cache_write_tokens", "cache_write_tokens_known", "output_tokens",
        "output_tokens_known", "reasoning_tokens", "reasoning_tokens_known",
        "cost_auto", "priced_auto", "cost_reported", "priced_reported", "cost_calculated",
        "priced_calculated",
    ],
    "call_metrics": [
        "provider", "model", "source", "agent", "status", "cost_status", "calls",
        *(c for name in [*TOKENS[:5], "cache_write_unknown_tokens", *TOKENS[5:], "cost_usd"]
          for c in (name, f"{name}_known")),
    ],
    "budgets": [
        "name", "limit_usd", "window", "tz", "scope", "action", "thresholds", "notify",
        "created_at", "updated_at",
    ],
    "budget_reservations": [
        "id", "budget", "amount_usd", "created_at", "expires_at", "run_id", "owner_host",
        "owner_pid",
    ],
    "budget_alerts": ["budget", "window_start", "kind", "threshold", "fired_at"],
}  # fmt: skip

EXPECTED_INDEXES = {
    "runs": {
        "ix_runs_parent_id",
        "ix_runs_root_id",
        "ix_runs_kind_key",
        "ix_runs_started_at",
        "ix_runs_status",
        "ix_runs_agent_id",
    },
    "calls": {
        "ix_calls_run_id",
        "ix_calls_started_at",
        "ix_calls_source_started_at",
        "ix_calls_session_id",
        "ix_calls_message_id",
    },
    "task_status_events": {
        "ix_task_status_events_task_key_at",
        "ix_task_status_events_run_id_at",
        "ix_task_status_events_project_task_key_at",
    },
    "budget_reservations": {"ix_budget_reservations_budget_expires_at"},
}


#: A call with the columns every revision has.
_INSERT_CALL = sa.text(
    "INSERT INTO calls (dedupe_key, source, model, started_at, input_tokens, cost_usd, "
    "cost_status, status, token_provenance, recorded_at) VALUES (:k, 'test', 'm', "
    ":at, :tokens, :cost, 'computed', 'ok', 'reported', 1700000000000000)"
)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


def test_fresh_database_upgrades_to_head_with_the_pinned_schema(engine: sa.Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == {*EXPECTED_COLUMNS, "alembic_version"}
    for table, columns in EXPECTED_COLUMNS.items():
        assert [c["name"] for c in inspector.get_columns(table)] == columns, table
    for table, indexes in EXPECTED_INDEXES.items():
        names = {i["name"] for i in inspector.get_indexes(table) if not i["unique"]}
        assert names == indexes, table
    unique = {
        (i["name"], tuple(i["column_names"])) for i in inspector.get_indexes("calls") if i["unique"]
    }
    assert unique == {("uq_calls_dedupe_key", ("dedupe_key",))}
    assert inspector.get_unique_constraints("calls") == []
    for table, column in (("task_status_events", "event_id"), ("api_keys", "key_hash")):
        unique = {(i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(table)}
        assert (f"uq_{table}_{column}", (column,)) in unique, table


def test_schema_module_matches_the_migrations(engine: sa.Engine) -> None:
    from llmledger.store.schema import metadata

    upgrade(engine)
    for table, columns in EXPECTED_COLUMNS.items():
        assert [c.name for c in metadata.tables[table].columns] == columns, table


def _schema(engine: sa.Engine) -> dict[str, object]:
    """Everything about a database's schema that the code relies on, comparable."""
    inspector = inspect(engine)
    out: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        pk = inspector.get_pk_constraint(table)
        out[table] = (
            [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            (pk["name"], pk["constrained_columns"]),
            sorted(
                (
                    fk["name"],
                    fk["constrained_columns"],
                    fk["referred_table"],
                    fk["referred_columns"],
                )
                for fk in inspector.get_foreign_keys(table)
            ),
            sorted(
                (i["name"], i["column_names"], bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            sorted((u["name"], u["column_names"]) for u in inspector.get_unique_constraints(table)),
        )
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            triggers = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        else:
            triggers = (
                "SELECT tgname, pg_get_triggerdef(pg_trigger.oid) || pg_get_functiondef(tgfoid) "
                "FROM pg_trigger JOIN pg_class ON pg_class.oid = tgrelid "
                "WHERE NOT tgisinternal AND relnamespace = current_schema()::regnamespace"
            )
        out["triggers"] = sorted(
            (n, " ".join(sql.split())) for n, sql in conn.exec_driver_sql(triggers)
        )
    return out


def test_an_empty_database_gets_the_schema_the_migrations_build(engine: sa.Engine) -> None:
    # A new ledger is created from the schema module at once, not migrated step by step:
    # it must be the ledger the migrations build, and migrate down and up like one.
    ensure_current(engine)
    assert current_revision(engine) == head_revision()
    created = _schema(engine)
    assert set(created) >= {*EXPECTED_COLUMNS, "alembic_version", "triggers"}
    assert created["triggers"]  # the roll-up's
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade(engine)
    assert _schema(engine) == created


def test_a_database_holding_other_tables_is_migrated(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE not_ours (x INTEGER)")
    ensure_current(engine)
    assert current_revision(engine) == head_revision()
    assert set(inspect(engine).get_table_names()) == {
        *EXPECTED_COLUMNS,
        "alembic_version",
        "not_ours",
    }


def test_downgrade_then_upgrade(engine: sa.Engine) -> None:
    upgrade(engine)
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert "calls" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_rows_at_0001_survive_the_upgrade_to_head(engine: sa.Engine) -> None:
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, root_id, kind, status, started_at) "
                "VALUES ('r1', 'r1', 'task', 'succeeded', 1700000000000000)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO calls (dedupe_key, run_id, source, model, input_tokens, "
                "output_tokens, cost_usd, cost_status, status, token_provenance, recorded_at) "
                "VALUES ('k1', 'r1', 'test', 'm', 10, 5, 1500000000000, 'computed', 'ok', "
                "'reported', 1700000000000000)"
            )
        )
    upgrade(engine)
    from llmledger.store.repository import Repository

    usage = Repository(engine).run_usage("r1")
    assert usage["m"].usage.input_tokens == 10
    assert usage["m"].usage.cache_read_tokens is None
    assert str(usage["m"].cost_usd.normalize()) == "1.5"  # type: ignore[union-attr]


def test_head_revision_constant_matches_the_migrations() -> None:
    from llmledger.store.engine import HEAD_REVISION

    assert head_revision() == HEAD_REVISION


def test_calls_at_0002_are_rolled_up_by_the_upgrade_and_kept_after(engine: sa.Engine) -> None:
    upgrade(engine, "0002")
    insert = _INSERT_CALL
    at = 1_700_000_000_000_000
    with engine.begin() as conn:
        conn.execute(insert, {"k": "k1", "at": at, "tokens": 10, "cost": 5})
        conn.execute(insert, {"k": "k2", "at": at + 1, "tokens": None, "cost": None})
    upgrade(engine)
    read = sa.text(
        "SELECT bucket, calls, input_tokens, input_tokens_known, cost_auto, "
        "priced_auto FROM call_rollup"
    )
    with engine.begin() as conn:
        assert [tuple(r) for r in conn.execute(read)] == [(at // 900_000_000, 2, 10, 1, 5, 1)]
        conn.execute(insert, {"k": "k3", "at": at + 2, "tokens": 7, "cost": 1})  # the trigger
        conn.execute(sa.text("DELETE FROM calls WHERE dedupe_key = 'k1'"))
        assert [tuple(r) for r in conn.execute(read)] == [(at // 900_000_000, 2, 7, 1, 1, 1)]
    downgrade(engine, "0002")
    assert "call_rollup" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # no trigger is left behind to write to a dropped table
        conn.execute(insert, {"k": "k4", "at": at, "tokens": 1, "cost": 1})


def test_calls_at_0003_keep_their_unique_key_and_roll_up_after_0004(engine: sa.Engine) -> None:
    upgrade(engine, "0003")
    insert = _INSERT_CALL.bindparams(cost=5)
    at = 1_700_000_000_000_000
    with engine.begin() as conn:
        conn.execute(insert, {"k": "k1", "at": at, "tokens": 10})
    upgrade(engine)
    read = sa.text("SELECT calls, input_tokens FROM call_rollup")
    with engine.begin() as conn:
        assert [tuple(r) for r in conn.execute(read)] == [(1, 10)]
        conn.execute(insert, {"k": "k2", "at": at, "tokens": 7})  # the triggers survived
        assert [tuple(r) for r in conn.execute(read)] == [(2, 17)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"k": "k1", "at": at, "tokens": 1})
    downgrade(engine, "0003")
    with engine.begin() as conn:
        conn.execute(insert, {"k": "k3", "at": at, "tokens": 1})
        assert [tuple(r) for r in conn.execute(read)] == [(3, 18)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"k": "k1", "at": at, "tokens": 1})
    assert inspect(engine).get_unique_constraints("calls")[0]["column_names"] == ["dedupe_key"]


def test_rows_at_0004_survive_0005_and_get_no_host_or_event_id(engine: sa.Engine) -> None:
    upgrade(engine, "0004")
    at = 1_700_000_000_000_000
    with engine.begin() as conn:
        conn.execute(_INSERT_CALL, {"k": "k1", "at": at, "tokens": 10, "cost": 5})
        conn.execute(
            sa.text(
                "INSERT INTO task_status_events (task_key, to_status, at) VALUES ('t', 'done', 1)"
            )
        )
    upgrade(engine)
    with engine.begin() as conn:
        assert list(conn.execute(sa.text("SELECT dedupe_key, host FROM calls"))) == [("k1", None)]
        events = "SELECT task_key, event_id FROM task_status_events"
        assert list(conn.execute(sa.text(events))) == [("t", None)]
        # Several events without an id may coexist; an id is stored once.
        insert = sa.text(
            "INSERT INTO task_status_events (task_key, to_status, at, event_id) "
            "VALUES ('t', 'done', 2, :e)"
        )
        conn.execute(insert, {"e": None})
        conn.execute(insert, {"e": "e1"})
        conn.execute(_INSERT_CALL, {"k": "k2", "at": at, "tokens": 7, "cost": 1})  # triggers
        read = sa.text("SELECT calls, input_tokens FROM call_rollup")
        assert [tuple(r) for r in conn.execute(read)] == [(2, 17)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"e": "e1"})
    downgrade(engine, "0004")
    inspector = inspect(engine)
    assert "api_keys" not in inspector.get_table_names()
    assert "host" not in {c["name"] for c in inspector.get_columns("calls")}
    with engine.begin() as conn:  # the roll-up triggers survived the way down
        conn.execute(_INSERT_CALL, {"k": "k3", "at": at, "tokens": 1, "cost": 1})
        read = sa.text("SELECT calls, input_tokens FROM call_rollup")
        assert [tuple(r) for r in conn.execute(read)] == [(3, 18)]


def test_calls_at_0006_fill_call_metrics_and_triggers_keep_it(engine: sa.Engine) -> None:
    upgrade(engine, "0006")
    at = 1_700_000_000_000_000
    with engine.begin() as conn:
        conn.execute(_INSERT_CALL, {"k": "k1", "at": at, "tokens": 10, "cost": 5})
    upgrade(engine)
    read = sa.text(
        "SELECT provider, model, agent, calls, input_tokens, input_tokens_known, "
        "output_tokens_known, cost_usd FROM call_metrics"
    )
    with engine.begin() as conn:
        assert [tuple(r) for r in conn.execute(read)] == [("", "m", "", 1, 10, 1, 0, 5)]
        conn.execute(_INSERT_CALL, {"k": "k2", "at": at, "tokens": 7, "cost": 1})  # triggers
        conn.execute(sa.text("UPDATE calls SET agent_id = 'a' WHERE dedupe_key = 'k1'"))
        rows = sorted(tuple(r) for r in conn.execute(read))
        assert rows == [("", "m", "", 1, 7, 1, 0, 1), ("", "m", "a", 1, 10, 1, 0, 5)]
        conn.execute(sa.text("DELETE FROM calls WHERE dedupe_key = 'k2'"))
        counts = sorted(tuple(r)[2:4] for r in conn.execute(read))
        assert counts == [("", 0), ("a", 1)]
    downgrade(engine, "0006")
    assert "call_metrics" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # no trigger left behind writes into a missing table
        conn.execute(_INSERT_CALL, {"k": "k3", "at": at, "tokens": 1, "cost": 1})


def test_calls_at_0007_keep_their_rows_and_triggers_through_0009_and_back(
    engine: sa.Engine,
) -> None:
    upgrade(engine, "0007")
    at = 1_700_000_000_000_000
    with engine.begin() as conn:
        conn.execute(_INSERT_CALL, {"k": "k1", "at": at, "tokens": 10, "cost": 5})
    upgrade(engine)
    with engine.begin() as conn:  # no backfill: the new attributes are unknown
        old = conn.execute(sa.text("SELECT subagent, subagent_type, branch, cwd FROM calls"))
        assert [tuple(r) for r in old] == [(None, None, None, None)]
        conn.execute(_INSERT_CALL, {"k": "k2", "at": at, "tokens": 7, "cost": 1})
        conn.execute(sa.text("UPDATE calls SET branch = 'main' WHERE dedupe_key = 'k2'"))
    downgrade(engine, "0007")
    names = {c["name"] for c in inspect(engine).get_columns("calls")}
    assert names.isdisjoint({"subagent", "subagent_type", "branch", "cwd"})
    with engine.begin() as conn:  # the roll-up and metrics triggers survived the way down
        conn.execute(_INSERT_CALL, {"k": "k3", "at": at, "tokens": 1, "cost": 1})
        rollup = conn.execute(sa.text("SELECT calls, input_tokens FROM call_rollup"))
        assert [tuple(r) for r in rollup] == [(3, 18)]
        metrics = conn.execute(sa.text("SELECT calls, input_tokens FROM call_metrics"))
        assert [tuple(r) for r in metrics] == [(3, 18)]


def test_calls_at_0007_stay_and_budgets_work_after_0008(engine: sa.Engine) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    from llmledger.budgets import budget_status, make_budget, set_budget
    from llmledger.store.repository import Repository

    upgrade(engine, "0007")
    at = 1_700_000_000_000_000
    with engine.begin() as conn:
        conn.execute(_INSERT_CALL, {"k": "k1", "at": at, "tokens": 10, "cost": 5 * 10**12})
    upgrade(engine)
    repo = Repository(engine)
    budget = make_budget("all", "10")
    set_budget(repo, budget)
    status = budget_status(repo, budget, now=datetime.now(UTC))
    assert (status.spent_usd, status.calls) == (Decimal(5), 1)  # the call from before counts
    downgrade(engine, "0007")
    tables = set(inspect(engine).get_table_names())
    assert not tables & {"budgets", "budget_reservations", "budget_alerts"}
    assert "calls" in tables


def test_calls_at_0010_fill_the_hour_rollup_and_triggers_keep_it(engine: sa.Engine) -> None:
    upgrade(engine, "0010")
    at = 1_700_000_000_000_000  # 22:13:20 UTC: the quarter hours 0 and 3 of one hour
    with engine.begin() as conn:
        conn.execute(_INSERT_CALL, {"k": "k1", "at": at, "tokens": 10, "cost": 5})
        conn.execute(_INSERT_CALL, {"k": "k2", "at": at + 2_700_000_000, "tokens": 4, "cost": 1})
    upgrade(engine)
    read = sa.text("SELECT hour, calls, input_tokens, cost_auto FROM call_rollup_hour")
    hour = at // 3_600_000_000
    with engine.begin() as conn:
        assert [tuple(r) for r in conn.execute(read)] == [(hour, 2, 14, 6)]
        conn.execute(_INSERT_CALL, {"k": "k3", "at": at + 1, "tokens": 7, "cost": 1})
        conn.execute(sa.text("DELETE FROM calls WHERE dedupe_key = 'k1'"))
        assert [tuple(r) for r in conn.execute(read)] == [(hour, 2, 11, 2)]
    downgrade(engine, "0010")
    assert "call_rollup_hour" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # no trigger is left behind to write to a dropped table
        conn.execute(_INSERT_CALL, {"k": "k4", "at": at, "tokens": 1, "cost": 1})
