"""The call roll-up: totals per 15-minute bucket that period reports read, kept by triggers.

The calls indexes on model and agent go: reports by model read the roll-up, and the few
queries filtered by agent scan; every call written paid for both.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.store import rollup

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_rollup",
        sa.Column("bucket", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(48), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in rollup.MEASURE_COLUMNS),
        sa.PrimaryKeyConstraint(*rollup.KEY_COLUMNS, name="pk_call_rollup"),
    )
    conn = op.get_bind()
    # The triggers and the backfill come from the module the application uses, so that the
    # roll-up a migrated ledger holds is the one the code keeps (row-level at this revision:
    # 0006 makes PostgreSQL's statement-level).
    rollup.create_triggers(conn, per_row=True)
    rollup.rebuild(conn)
    op.drop_index("ix_calls_model", "calls")
    op.drop_index("ix_calls_agent_id", "calls")


def downgrade() -> None:
    op.create_index("ix_calls_agent_id", "calls", ["agent_id"])
    op.create_index("ix_calls_model", "calls", ["model"])
    rollup.drop_triggers(op.get_bind())
    op.drop_table("call_rollup")
