"""The ``call_rollup`` table: call totals per 15-minute bucket, kept by triggers on ``calls``.

Period reports read the roll-up instead of every call: a row holds the totals of the calls of
one (bucket, source, model), where ``bucket`` is ``started_at // 15 min`` (every UTC offset in
use is a multiple of 15 minutes, so local days are unions of buckets), a missing model is
stored as ``''`` and a call without a time has bucket ``-1``. The key is kept short on purpose:
the cost of a report is the number of roll-up rows it reads, so reports filtered by project or
agent read ``calls`` instead. Each token column has a ``*_known`` count beside its sum, so
that a sum no call reported stays None (unknown is not zero) even after deletes; each cost
mode keeps its sum and how many calls it priced.

Triggers add a call's contribution on insert, take it away on delete, and do both on update,
on SQLite (row-level) and PostgreSQL (statement-level, from the statement's transition
tables) alike, so that every writer (the collector, the importer, repairs, ``llmledger run``)
keeps the roll-up exact without knowing it exists. A bulk load into an empty ledger drops the
triggers and writes the roll-up from sums it works out with :func:`partial`, the triggers'
arithmetic in Python. This module is SQL text and that mirror, free of SQLAlchemy, so that
the reports' fast path loads it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import add, itemgetter
from typing import Any

import orjson

__all__ = [
    "BUCKET_MICROS",
    "COST_COLUMNS",
    "KEY_COLUMNS",
    "MEASURE_COLUMNS",
    "NO_TIME",
    "SUMMED",
    "Key",
    "cost_expressions",
    "create_triggers",
    "drop_triggers",
    "insert_sql",
    "merge",
    "partial",
    "rebuild",
]

#: The width of a bucket: 15 minutes in microseconds.
BUCKET_MICROS = 900_000_000
#: The bucket of calls without a time.
NO_TIME = -1
KEY_COLUMNS = ("bucket", "source", "model")
#: Token columns summed by reports (each with a ``<name>_known`` count in the roll-up).
SUMMED = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
#: The calls columns :func:`partial` reads.
READ_COLUMNS = ("started_at", "source", "model", *SUMMED, "cost_usd", "cost_status", "metadata")
#: Per cost mode: (sum column, priced-calls column).
COST_COLUMNS = {
    "auto": ("cost_auto", "priced_auto"),
    "reported": ("cost_reported", "priced_reported"),
    "calculate": ("cost_calculated", "priced_calculated"),
}
#: The summed columns of a roll-up row, in table order.
MEASURE_COLUMNS: tuple[str, ...] = (
    "calls",
    *(c for name in SUMMED for c in (name, f"{name}_known")),
    *(c for pair in COST_COLUMNS.values() for c in pair),
)
_TRIGGERS = ("calls_rollup_insert", "calls_rollup_delete", "calls_rollup_update")
_PG_FUNCTION = "llmledger_calls_rollup"


def cost_expressions(row: str, dialect: str) -> dict[str, str]:
    """SQL for a call's cost in each mode, on the call named ``row`` (``NEW``, ``calls``...).

    ``calculate`` is the cost computed from tokens, which the importer keeps in
    ``metadata.computed_cost_pico`` for a call whose log reported its own cost."""
    if dialect == "postgresql":
        computed = f"({row}.metadata ->> 'computed_cost_pico')::bigint"
    else:
        computed = f"CAST(json_extract({row}.metadata, '$.computed_cost_pico') AS INTEGER)"
    reported = f"{row}.cost_status = 'reported'"
    return {
        "auto": f"{row}.cost_usd",
        "reported": f"CASE WHEN {reported} THEN {row}.cost_usd END",
        "calculate": f"CASE WHEN {reported} THEN {computed} ELSE {row}.cost_usd END",
    }


def _contribution(row: str, dialect: str) -> dict[str, str]:
    """Column -> SQL for one call's contribution to its roll-up row (keys and measures)."""
    bucket = (
        f"CASE WHEN {row}.started_at IS NULL THEN {NO_TIME} "
        f"ELSE {row}.started_at / {BUCKET_MICROS} END"
    )
    out = {
        "bucket": bucket,
        "source": f"{row}.source",
        "model": f"COALESCE({row}.model, '')",
        "calls": "1",
    }
    for name in SUMMED:
        out[name] = f"COALESCE({row}.{name}, 0)"
        out[f"{name}_known"] = f"CASE WHEN {row}.{name} IS NULL THEN 0 ELSE 1 END"
    for mode, expr in cost_expressions(row, dialect).items():
        total, priced = COST_COLUMNS[mode]
        out[total] = f"COALESCE({expr}, 0)"
        out[priced] = f"CASE WHEN ({expr}) IS NULL THEN 0 ELSE 1 END"
    return out


def _upsert(row: str, sign: str, dialect: str) -> str:
    """One statement adding (sign ``+``) or taking away (``-``) a call's contribution."""
    parts = _contribution(row, dialect)
    measures = [c for c in parts if c not in KEY_COLUMNS]
    values = [parts[c] if c in KEY_COLUMNS else f"{sign}({parts[c]})" for c in parts]
    updates = ", ".join(f"{c} = call_rollup.{c} + excluded.{c}" for c in measures)
    return (
        f"INSERT INTO call_rollup ({', '.join(parts)}) VALUES ({', '.join(values)}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET {updates}"
    )


#: Columns of ``calls`` whose change moves a call's contribution.
_WATCHED = ("started_at", "source", "model", *SUMMED, "cost_usd", "cost_status", "metadata")


def _statement_sum(sources: Sequence[tuple[str, str]], dialect: str) -> str:
    """The roll-up's statement-level trigger body (see :func:`grouped_upsert_sql`)."""
    return grouped_upsert_sql("call_rollup", _contribution("r", dialect), KEY_COLUMNS, sources)


def grouped_upsert_sql(
    table: str,
    parts: Mapping[str, str],
    keys: Sequence[str],
    sources: Sequence[tuple[str, str]],
) -> str:
    """One statement adding to ``table`` (a roll-up kept by triggers) the contributions of the
    rows of transition tables: ``parts`` maps each column to its SQL over a call row ``r``,
    ``keys`` are the columns the roll-up is keyed by, and ``sources`` are (table, sign)
    pairs. Keys are written in order (concurrent statements then lock roll-up rows in the same
    order), and a key whose sums net to nothing is left alone (an update that moved no
    contribution)."""
    measures = [c for c in parts if c not in keys]
    selects = [
        "SELECT "
        + ", ".join(
            f"{parts[c]} AS {c}" if c in keys else f"{sign}({parts[c]}) AS {c}" for c in parts
        )
        + f" FROM {source} AS r"
        for source, sign in sources
    ]
    key_list = ", ".join(keys)
    having = (
        " HAVING " + " OR ".join(f"SUM({c}) <> 0" for c in measures) if len(sources) > 1 else ""
    )
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in measures)
    return (
        f"INSERT INTO {table} ({', '.join(parts)}) "
        f"SELECT {key_list}, {', '.join(f'SUM({c})' for c in measures)} "
        f"FROM ({' UNION ALL '.join(selects)}) AS d GROUP BY {key_list}{having} "
        f"ORDER BY {key_list} ON CONFLICT ({key_list}) DO UPDATE SET {updates}"
    )


def _statement_trigger_sql() -> list[str]:
    # Statement-level triggers with transition tables: one roll-up statement per statement on
    # calls (a batch written by one INSERT ... SELECT), not one per row. PostgreSQL allows no
    # column list on a trigger with transition tables: every update fires, and nets to nothing
    # unless it moved a contribution.
    return [
        f"""CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN {_statement_sum([("new_calls", "+")], "postgresql")};
    ELSIF TG_OP = 'DELETE' THEN {_statement_sum([("old_calls", "-")], "postgresql")};
    ELSE {_statement_sum([("new_calls", "+"), ("old_calls", "-")], "postgresql")};
    END IF;
    RETURN NULL;
END $$""",
        f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON calls REFERENCING NEW TABLE AS "
        f"new_calls FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
        f"CREATE TRIGGER {_TRIGGERS[1]} AFTER DELETE ON calls REFERENCING OLD TABLE AS "
        f"old_calls FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
        f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE ON calls REFERENCING OLD TABLE AS "
        f"old_calls NEW TABLE AS new_calls FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()",
    ]


def _trigger_sql(dialect: str, per_row: bool) -> list[str]:
    if dialect == "postgresql" and not per_row:
        return _statement_trigger_sql()
    if dialect == "postgresql":
        return [
            f"""CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN {_upsert("OLD", "-", dialect)}; END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN {_upsert("NEW", "+", dialect)}; END IF;
    RETURN NULL;
END $$""",
            f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT OR DELETE ON calls "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()",
            f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE OF {', '.join(_WATCHED)} ON calls "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()",
        ]
    return [
        f"CREATE TRIGGER {_TRIGGERS[0]} AFTER INSERT ON calls BEGIN "
        f"{_upsert('NEW', '+', dialect)}; END",
        f"CREATE TRIGGER {_TRIGGERS[1]} AFTER DELETE ON calls BEGIN "
        f"{_upsert('OLD', '-', dialect)}; END",
        f"CREATE TRIGGER {_TRIGGERS[2]} AFTER UPDATE OF {', '.join(_WATCHED)} ON calls BEGIN "
        f"{_upsert('OLD', '-', dialect)}; {_upsert('NEW', '+', dialect)}; END",
    ]


def create_triggers(conn: Any, *, per_row: bool = False) -> None:
    """Create the triggers that keep ``call_rollup`` in step (``conn``: a SQLAlchemy
    connection). On PostgreSQL they are statement-level (one roll-up statement per statement
    on ``calls``); ``per_row`` makes them row-level, as migration 0003 created them."""
    for statement in _trigger_sql(conn.dialect.name, per_row):
        conn.exec_driver_sql(statement)


def drop_triggers(conn: Any) -> None:
    """Drop those triggers (for a bulk load, which then calls :func:`rebuild`)."""
    drop_calls_triggers(conn, _TRIGGERS, _PG_FUNCTION)


def drop_calls_triggers(conn: Any, names: Sequence[str], pg_function: str) -> None:
    """Drop the triggers ``names`` on ``calls`` (and, on PostgreSQL, their function): what
    keeps a roll-up table in step."""
    for name in names:
        conn.exec_driver_sql(
            f"DROP TRIGGER IF EXISTS {name} ON calls"
            if conn.dialect.name == "postgresql"
            else f"DROP TRIGGER IF EXISTS {name}"
        )
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {pg_function}()")


def rebuild(conn: Any) -> None:
    """Compute ``call_rollup`` again from every call, in one statement."""
    parts = _contribution("calls", conn.dialect.name)
    measures = [c for c in parts if c not in KEY_COLUMNS]
    keys = [parts[c] for c in KEY_COLUMNS]
    select = ", ".join([*keys, *(f"SUM({parts[c]})" for c in measures)])
    conn.exec_driver_sql("DELETE FROM call_rollup")
    conn.exec_driver_sql(
        f"INSERT INTO call_rollup ({', '.join(parts)}) SELECT {select} FROM calls "
        f"GROUP BY {', '.join(keys)}"
    )


#: A roll-up key: (bucket, source, model).
Key = tuple[int, str, str]


def partial(
    rows: Iterable[Sequence[Any]], at: Mapping[str, int], fixed: Mapping[str, Any] | None = None
) -> dict[Key, list[int]] | None:
    """The roll-up rows of some calls worked out in Python, exactly as the triggers would sum
    them (for a bulk load, which writes them instead): key -> measures in the order of
    :data:`MEASURE_COLUMNS`. ``rows`` are tuples of ``calls`` values in their stored form and
    ``at`` gives the position of each of :data:`READ_COLUMNS` in them, but for the source and
    token columns in ``fixed``, whose values are the same for every row. None when a value is
    not one this mirror is sure to treat as SQL does (then :func:`rebuild` must run)."""
    fixed = fixed or {}
    started, model = at["started_at"], at["model"]
    source: int | None = None if "source" in fixed else at["source"]
    source_value: Any = fixed.get("source")
    counts = _getter([at[name] for name in SUMMED if name not in fixed])
    slots = [1 + 2 * i for i, name in enumerate(SUMMED) if name not in fixed]
    if any(type(fixed.get(name)) not in (int, type(None)) for name in SUMMED):
        return None
    fixed_counts = [
        (1 + 2 * i, fixed[name]) for i, name in enumerate(SUMMED) if fixed.get(name) is not None
    ]
    cost_at, status_at, meta_at = at["cost_usd"], at["cost_status"], at["metadata"]
    first_cost = 1 + 2 * len(SUMMED)
    measures = len(MEASURE_COLUMNS)
    out: dict[Key, list[int]] = {}
    for row in rows:
        when = row[started]
        if when is None:
            bucket = NO_TIME
        elif type(when) is int:
            # SQL's integer division truncates toward zero (before 1970 too).
            bucket = when // BUCKET_MICROS if when >= 0 else -(-when // BUCKET_MICROS)
        else:
            return None
        name = row[model]
        where = source_value if source is None else row[source]
        key = (bucket, where, "" if name is None else name)
        sums = out.get(key)
        if sums is None:
            sums = out[key] = [0] * measures
        sums[0] += 1
        for slot, value in zip(slots, counts(row)):  # noqa: B905 (as long by construction)
            if value is not None:
                if type(value) is not int:
                    return None
                sums[slot] += value
                sums[slot + 1] += 1
        if fixed_counts:
            for slot, value in fixed_counts:
                sums[slot] += value
                sums[slot + 1] += 1
        slot = first_cost
        cost = row[cost_at]
        if cost is not None and type(cost) is not int:
            return None
        if row[status_at] != "reported":
            if cost is not None:  # auto and calculate; nothing reported
                sums[slot] += cost
                sums[slot + 1] += 1
                sums[slot + 4] += cost
                sums[slot + 5] += 1
            continue
        computed: int | None = None
        if row[meta_at] is not None:
            try:
                value = orjson.loads(row[meta_at]).get("computed_cost_pico")
            except (orjson.JSONDecodeError, AttributeError):
                return None
            if value is not None and type(value) is not int:
                return None
            computed = value
        for mode_cost in (cost, cost, computed):
            if mode_cost is not None:
                sums[slot] += mode_cost
                sums[slot + 1] += 1
            slot += 2
    return out


def _getter(indexes: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    # itemgetter returns a bare value, not a 1-tuple, for one index.
    if len(indexes) == 1:
        return lambda row: (row[indexes[0]],)
    return itemgetter(*indexes) if indexes else lambda row: ()


def merge(into: dict[Key, list[int]], part: Mapping[Key, list[int]]) -> None:
    """Add the roll-up rows ``part`` to ``into``."""
    for key, sums in part.items():
        have = into.get(key)
        into[key] = list(sums) if have is None else list(map(add, have, sums))


def insert_sql(dialect: str) -> str:
    """Driver SQL that writes one roll-up row: its key, then its measures in the order
    :func:`partial` sums them."""
    columns = (*KEY_COLUMNS, *MEASURE_COLUMNS)
    marks = ", ".join("?" if dialect == "sqlite" else "%s" for _ in columns)
    return f"INSERT INTO call_rollup ({', '.join(columns)}) VALUES ({marks})"
