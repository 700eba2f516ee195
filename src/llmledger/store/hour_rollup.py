"""The ``call_rollup_hour`` table: ``call_rollup`` summed per hour, kept by triggers on
``call_rollup``.

A period report sums every roll-up row of its range, so its cost is the number of rows it
reads; an hour holds four 15-minute buckets, so this table has up to four times fewer rows.
A row holds the totals of one (hour, source, model), where ``hour`` is ``bucket // 4`` and
every bucket before 1970 or without a time (``bucket < 0``) is hour ``-1``; its columns are
those of ``call_rollup``, the same sums. Reports read it wherever the local days are unions of
whole hours (zones whose offsets and changes fall on the hour) and ``call_rollup`` for the
quarter hours at the ends of a range and for the other zones.

The triggers are on ``call_rollup``, not on ``calls``: every write that moves the roll-up (the
calls' triggers, a bulk load's :func:`~llmledger.store.rollup.rebuild` or merge) moves this
table with it, and no writer needs to know it exists. SQLite: row-level; PostgreSQL:
statement-level from the transition tables, one grouped statement written in key order.
"""

from __future__ import annotations

from typing import Any

from llmledger.store.rollup import MEASURE_COLUMNS, NO_TIME, grouped_upsert_sql

__all__ = ["HOUR_BUCKETS", "TABLE", "create_triggers", "drop_triggers", "rebuild"]

#: The table's name.
TABLE = "call_rollup_hour"
#: 15-minute buckets per hour.
HOUR_BUCKETS = 4
_KEYS = ("hour", "source", "model")
_TRIGGERS = ("call_rollup_hour_insert", "call_rollup_hour_delete", "call_rollup_hour_update")
_PG_FUNCTION = "llmledger_call_rollup_hour"


def _parts(row: str) -> dict[str, str]:
    """Column -> SQL for the contribution of the roll-up row named ``row``."""
    hour = f"CASE WHEN {row}.bucket < 0 THEN {NO_TIME} ELSE {row}.bucket / {HOUR_BUCKETS} END"
    return {
        "hour": hour,
        "source": f"{row}.source",
        "model": f"{row}.model",
        **{c: f"{row}.{c}" for c in MEASURE_COLUMNS},
    }


def _upsert(row: str, sign: str) -> str:
    """One statement adding (``+``) or taking away (``-``) a roll-up row's sums (SQLite)."""
    parts = _parts(row)
    values = [v if c in _KEYS else f"{sign}({v})" for c, v in parts.items()]
    updates = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in MEASURE_COLUMNS)
    return (
        f"INSERT INTO {TABLE} ({', '.join(parts)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT ({', '.join(_KEYS)}) DO UPDATE SET {updates}"
    )


def _trigger_sql(dialect: str) -> list[str]:
    if dialect == "postgresql":
        parts = _parts("r")

        def grouped(sources: list[tuple[str, str]]) -> str:
            return grouped_upsert_sql(TABLE, parts, _KEYS, sources)

        return [
            f"""CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN {grouped([("new_rows", "+")])};
    ELSIF TG_OP = 'DELETE' THEN {grouped([("old_rows", "-")])};
    ELSE {grouped([("new_rows", "+"), ("old_rows", "-")])};
    END IF;
    RETURN NULL;
END $$""",
            f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON call_rollup REFERENCING NEW TABLE "
            f"AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE TRIGGER {_TRIGGERS[1]} AFTER DELETE ON call_rollup REFERENCING OLD TABLE "
            f"AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE ON call_rollup REFERENCING OLD TABLE "
            f"AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
            f"{_PG_FUNCTION}()",
        ]
    return [
        f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON call_rollup BEGIN "
        f"{_upsert('NEW', '+')}; END",
        f"CREATE TRIGGER {_TRIGGERS[1]} AFTER DELETE ON call_rollup BEGIN "
        f"{_upsert('OLD', '-')}; END",
        f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE ON call_rollup BEGIN "
        f"{_upsert('OLD', '-')}; {_upsert('NEW', '+')}; END",
    ]


def create_triggers(conn: Any) -> None:
    """Create the triggers that keep ``call_rollup_hour`` in step with ``call_rollup``
    (``conn``: a SQLAlchemy connection)."""
    for statement in _trigger_sql(conn.dialect.name):
        conn.exec_driver_sql(statement)


def drop_triggers(conn: Any) -> None:
    """Drop those triggers (and, on PostgreSQL, their function)."""
    for name in _TRIGGERS:
        conn.exec_driver_sql(
            f"DROP TRIGGER IF EXISTS {name} ON call_rollup"
            if conn.dialect.name == "postgresql"
            else f"DROP TRIGGER IF EXISTS {name}"
        )
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")


def rebuild(conn: Any) -> None:
    """Compute ``call_rollup_hour`` again from ``call_rollup``, in one statement."""
    parts = _parts("call_rollup")
    keys = [parts[c] for c in _KEYS]
    sums = ", ".join(f"SUM({parts[c]})" for c in MEASURE_COLUMNS)
    conn.exec_driver_sql(f"DELETE FROM {TABLE}")
    conn.exec_driver_sql(
        f"INSERT INTO {TABLE} ({', '.join(parts)}) SELECT {', '.join(keys)}, {sums} "
        f"FROM call_rollup GROUP BY {', '.join(keys)}"
    )
