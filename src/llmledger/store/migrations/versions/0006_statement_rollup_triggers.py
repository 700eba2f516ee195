"""PostgreSQL keeps the roll-up with statement-level triggers.

The row-level triggers of 0003 ran one roll-up upsert per call written; the statement-level
ones (with transition tables) run one per statement on ``calls``, so that a batch written by
one ``INSERT ... SELECT`` costs one. The roll-up itself is unchanged (both keep it exact).
SQLite keeps its row triggers: nothing changes there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

from llmledger.store import rollup

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        rollup.drop_triggers(conn)
        rollup.create_triggers(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        rollup.drop_triggers(conn)
        rollup.create_triggers(conn, per_row=True)
