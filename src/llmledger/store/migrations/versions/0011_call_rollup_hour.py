"""The ``call_rollup_hour`` table: the call roll-up summed per hour, kept by triggers on
``call_rollup``, so that a period report over a large ledger reads up to four times fewer rows
(``store/hour_rollup.py``). The table is filled from the roll-up already stored.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.store import hour_rollup
from llmledger.store.rollup import MEASURE_COLUMNS

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        hour_rollup.TABLE,
        sa.Column("hour", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(48), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in MEASURE_COLUMNS),
        sa.PrimaryKeyConstraint("hour", "source", "model", name=f"pk_{hour_rollup.TABLE}"),
    )
    conn = op.get_bind()
    hour_rollup.rebuild(conn)
    hour_rollup.create_triggers(conn)


def downgrade() -> None:
    hour_rollup.drop_triggers(op.get_bind())
    op.drop_table(hour_rollup.TABLE)
