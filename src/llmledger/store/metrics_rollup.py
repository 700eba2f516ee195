"""The ``call_metrics`` table: call totals per label set of ``GET /metrics``, kept by triggers.

A row holds the totals of every call of one (provider, model, source, agent, status,
cost_status), an unknown provider, model or agent stored as ``''``: the labels of the
metrics, and nothing else (no time, no id), so a scrape reads a few hundred rows however large
the ledger. Each summed column has a ``*_known`` count beside it, so that a sum no call
reported stays unknown (no sample) rather than zero. ``cache_write_unknown_tokens`` is the
part of each call's cache writes its source did not split into 5m and 1h.

The triggers work as those of ``call_rollup`` (``store/rollup.py``): row-level on SQLite,
statement-level from the transition tables on PostgreSQL; they add a call's contribution on
insert, take it away on delete, and both on update, so every writer keeps the table exact.
The SQLite bulk load drops them and calls :func:`rebuild` before creating them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmledger.store.rollup import drop_calls_triggers, grouped_upsert_sql

__all__ = [
    "KEY_COLUMNS",
    "MEASURE_COLUMNS",
    "SUMMED",
    "create_triggers",
    "drop_triggers",
    "rebuild",
]

KEY_COLUMNS = ("provider", "model", "source", "agent", "status", "cost_status")
#: Summed columns, each with a ``<name>_known`` count.
SUMMED = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_write_unknown_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
)
MEASURE_COLUMNS: tuple[str, ...] = (
    "calls",
    *(c for name in SUMMED for c in (name, f"{name}_known")),
)
_TRIGGERS = ("calls_metrics_insert", "calls_metrics_delete", "calls_metrics_update")
_PG_FUNCTION = "llmledger_calls_metrics"
#: Columns of ``calls`` whose change moves a call's contribution.
_WATCHED = (
    "provider",
    "model",
    "source",
    "agent_id",
    "status",
    "cost_status",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
)


def _value(row: str, name: str) -> str:
    """SQL for one summed value of the call ``row`` (NULL when the call does not know it)."""
    if name == "cache_write_unknown_tokens":
        return (
            f"({row}.cache_write_tokens - COALESCE({row}.cache_write_5m_tokens, 0) "
            f"- COALESCE({row}.cache_write_1h_tokens, 0))"
        )
    return f"{row}.{name}"


def _contribution(row: str) -> dict[str, str]:
    """Column -> SQL for one call's contribution to its row (keys and measures)."""
    out = {
        "provider": f"COALESCE({row}.provider, '')",
        "model": f"COALESCE({row}.model, '')",
        "source": f"{row}.source",
        "agent": f"COALESCE({row}.agent_id, '')",
        "status": f"{row}.status",
        "cost_status": f"{row}.cost_status",
        "calls": "1",
    }
    for name in SUMMED:
        value = _value(row, name)
        out[name] = f"COALESCE({value}, 0)"
        out[f"{name}_known"] = f"CASE WHEN {value} IS NULL THEN 0 ELSE 1 END"
    return out


def _upsert(row: str, sign: str) -> str:
    parts = _contribution(row)
    measures = [c for c in parts if c not in KEY_COLUMNS]
    values = [parts[c] if c in KEY_COLUMNS else f"{sign}({parts[c]})" for c in parts]
    updates = ", ".join(f"{c} = call_metrics.{c} + excluded.{c}" for c in measures)
    return (
        f"INSERT INTO call_metrics ({', '.join(parts)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {updates}"
    )


def _statement_sum(sources: Sequence[tuple[str, str]]) -> str:
    """The statement-level trigger body (see :func:`~llmledger.store.rollup.grouped_upsert_sql`)."""
    return grouped_upsert_sql("call_metrics", _contribution("r"), KEY_COLUMNS, sources)


def _trigger_sql(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            f"""CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN {_statement_sum([("new_calls", "+")])};
    ELSIF TG_OP = 'DELETE' THEN {_statement_sum([("old_calls", "-")])};
    ELSE {_statement_sum([("new_calls", "+"), ("old_calls", "-")])};
    END IF;
    RETURN NULL;
END $$""",
            f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON calls REFERENCING NEW TABLE AS "
            f"new_calls FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE TRIGGER {_TRIGGERS[1]} AFTER DELETE ON calls REFERENCING OLD TABLE AS "
            f"old_calls FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE ON calls REFERENCING OLD TABLE AS "
            f"old_calls NEW TABLE AS new_calls FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {_PG_FUNCTION}()",
        ]
    return [
        f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON calls BEGIN {_upsert('NEW', '+')}; END",
        f"CREATE TRIGGER {_TRIGGERS[1]} AFTER DELETE ON calls BEGIN {_upsert('OLD', '-')}; END",
        f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE OF {', '.join(_WATCHED)} ON calls BEGIN "
        f"{_upsert('OLD', '-')}; {_upsert('NEW', '+')}; END",
    ]


def create_triggers(conn: Any) -> None:
    """Create the triggers that keep ``call_metrics`` in step (``conn``: a SQLAlchemy
    connection)."""
    for statement in _trigger_sql(conn.dialect.name):
        conn.exec_driver_sql(statement)


def drop_triggers(conn: Any) -> None:
    """Drop those triggers (for a bulk load, which then calls :func:`rebuild`)."""
    drop_calls_triggers(conn, _TRIGGERS, _PG_FUNCTION)


def rebuild(conn: Any) -> None:
    """Compute ``call_metrics`` again from every call, in one statement.

    On SQLite a cost sum past 64 bits (about $9.2M of one label set) makes ``SUM`` fail where
    the triggers' ``+`` turns the sum into a REAL: the cost is then summed with ``TOTAL`` (a
    REAL too), as the triggers would have kept it."""
    conn.exec_driver_sql("DELETE FROM call_metrics")
    if conn.dialect.name != "sqlite":
        conn.exec_driver_sql(_rebuild_sql(exact=True))
        return
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(_rebuild_sql(exact=True))
    except Exception as exc:
        if "integer overflow" not in str(exc):
            raise
        conn.exec_driver_sql(_rebuild_sql(exact=False))


def _rebuild_sql(*, exact: bool) -> str:
    parts = _contribution("calls")
    measures = [c for c in parts if c not in KEY_COLUMNS]
    keys = [parts[c] for c in KEY_COLUMNS]
    sums = [f"{'SUM' if exact or c != 'cost_usd' else 'TOTAL'}({parts[c]})" for c in measures]
    return (
        f"INSERT INTO call_metrics ({', '.join(parts)}) SELECT {', '.join([*keys, *sums])} "
        f"FROM calls GROUP BY {', '.join(keys)}"
    )
