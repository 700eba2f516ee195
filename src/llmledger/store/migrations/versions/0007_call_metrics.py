"""The ``call_metrics`` table: call totals per label set of ``GET /metrics``, kept by triggers.

A scrape then reads a few hundred rows instead of every call (``store/metrics_rollup.py``).
The table is filled from the calls already stored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.store import metrics_rollup

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    lengths = (64, 200, 48, 128, 8, 16)
    op.create_table(
        "call_metrics",
        *(
            sa.Column(name, sa.String(length), nullable=False)
            for name, length in zip(metrics_rollup.KEY_COLUMNS, lengths, strict=True)
        ),
        *(
            sa.Column(name, sa.BigInteger, nullable=False)
            for name in metrics_rollup.MEASURE_COLUMNS
        ),
        sa.PrimaryKeyConstraint(*metrics_rollup.KEY_COLUMNS, name="pk_call_metrics"),
    )
    conn = op.get_bind()
    metrics_rollup.create_triggers(conn)
    metrics_rollup.rebuild(conn)


def downgrade() -> None:
    metrics_rollup.drop_triggers(op.get_bind())
    op.drop_table("call_metrics")
