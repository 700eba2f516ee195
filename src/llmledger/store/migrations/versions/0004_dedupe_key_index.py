"""The calls' dedupe key is kept unique by an index instead of a table constraint.

A first import into an empty SQLite ledger drops the calls indexes and builds each once
after the last row; SQLite cannot drop a table constraint, so the unique key becomes an index
it can drop like the others. Upserts (``ON CONFLICT (dedupe_key)``) work alike with either.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from llmledger.store import rollup

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NAME = "uq_calls_dedupe_key"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        # SQLite rebuilds the table to drop a constraint, and the triggers go with the old one.
        rollup.drop_triggers(conn)
        with op.batch_alter_table("calls", recreate="always") as batch:
            batch.drop_constraint(_NAME, type_="unique")
            batch.create_index(_NAME, ["dedupe_key"], unique=True)
        rollup.create_triggers(conn)
    else:
        op.drop_constraint(_NAME, "calls", type_="unique")
        op.create_index(_NAME, "calls", ["dedupe_key"], unique=True)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        rollup.drop_triggers(conn)
        with op.batch_alter_table("calls", recreate="always") as batch:
            batch.drop_index(_NAME)
            batch.create_unique_constraint(_NAME, ["dedupe_key"])
        rollup.create_triggers(conn)
    else:
        op.drop_index(_NAME, "calls")
        op.create_unique_constraint(_NAME, "calls", ["dedupe_key"])
