"""Writing a batch of calls to PostgreSQL in one statement instead of one per row.

The rows are copied (``COPY``) into a temporary table of the connection, then stored by one
``INSERT INTO calls ... SELECT ... ON CONFLICT (dedupe_key) DO UPDATE`` with the upsert's
rule (a copy of a stored call replaces it only when larger). One statement per batch is what
makes PostgreSQL fast here: a round trip, a plan and a firing of the roll-up triggers (which
are statement-level on PostgreSQL, see :mod:`llmledger.store.rollup`) per batch, not per row.
A few rows go in one multi-row ``INSERT ... VALUES`` instead (no temporary table).

Rows are written in ``dedupe_key`` order (byte order, the same in both forms), so concurrent
batches that share calls lock them in the same order and wait for each other rather than
deadlock. One statement may not touch a key twice, so copies of a call within a batch are
settled first, by the rule the per-row upsert applied in turn: a later copy wins only when
its token total is larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from llmledger.store.repository import COPY_TOTAL_COLUMNS, on_larger_copy_sql

__all__ = ["COPY_MIN_ROWS", "upsert_calls"]

#: From this many rows a batch goes through ``COPY`` (below, a multi-row ``VALUES``).
COPY_MIN_ROWS = 64
_TEMP = "llmledger_calls_in"
#: From this many rows the temporary table is emptied by TRUNCATE (below, by DELETE).
_TRUNCATE_ROWS = 2_000


def upsert_calls(
    conn: Connection,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fixed: Sequence[tuple[str, Any]] = (),
) -> int:
    """Store ``rows`` (values of ``columns`` in their stored form; the ``fixed`` (column,
    value) pairs are the same on every row) by the upsert's rule, inside the transaction of
    ``conn``; returns how many rows were inserted or replaced."""
    if not rows:
        return 0
    rows = _settled(columns, rows)
    raw = conn.connection.driver_connection
    assert raw is not None
    names = ", ".join([*columns, *(name for name, _ in fixed)])
    literals = [_literal(value) for _, value in fixed]
    conflict = on_larger_copy_sql()
    with raw.cursor() as cursor:
        if len(rows) < COPY_MIN_ROWS:
            one = ", ".join(
                ["CAST(%s AS jsonb)" if name == "metadata" else "%s" for name in columns]
                + [literal.replace("%", "%%") for literal in literals]
            )
            cursor.execute(
                f"INSERT INTO calls ({names}) VALUES "
                + ", ".join(f"({one})" for _ in rows)
                + f" {conflict}",
                [value for row in rows for value in row],
            )
            return max(int(cursor.rowcount), 0)
        # Created once per connection (ON COMMIT DELETE ROWS empties it at each commit);
        # from calls itself, so that a value too long for its column fails at the COPY.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_TEMP} ON COMMIT DELETE ROWS AS "
            "SELECT * FROM calls WITH NO DATA"
        )
        with cursor.copy(f"COPY {_TEMP} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        selected = ", ".join([*columns, *literals])
        cursor.execute(
            f"INSERT INTO calls ({names}) SELECT {selected} FROM {_TEMP} "
            f'ORDER BY dedupe_key COLLATE "C" {conflict}'
        )
        written = max(int(cursor.rowcount), 0)
        # Emptied for the next batch of this transaction: a DELETE is cheaper for a small
        # batch, but leaves dead rows that the next batches would scan until the commit.
        cursor.execute(
            f"DELETE FROM {_TEMP}" if len(rows) < _TRUNCATE_ROWS else f"TRUNCATE {_TEMP}"
        )
        return written


def _settled(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """One row per dedupe key (the first, unless a later copy is larger), in key order."""
    key = columns.index("dedupe_key")
    totals = [columns.index(name) for name in COPY_TOTAL_COLUMNS if name in columns]
    best: dict[str, Sequence[Any]] = {}
    for row in rows:
        kept = best.get(row[key])
        if kept is None or _total(row, totals) > _total(kept, totals):
            best[row[key]] = row
    return [best[k] for k in sorted(best)]


def _total(row: Sequence[Any], at: Sequence[int]) -> int:
    return sum(row[i] or 0 for i in at)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is int:
        return str(value)
    if type(value) is str and "\0" not in value:
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {value!r}")
