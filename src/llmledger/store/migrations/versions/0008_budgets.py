"""Budgets: spending limits, their live reservations, and the warnings already sent.

- ``budgets``: name, limit (USD), window, time zone, scope, action (block or warn), warning
  thresholds, webhook URL.
- ``budget_reservations``: the worst case of calls about to be made, held against a budget
  until the call is recorded or the reservation expires.
- ``budget_alerts``: which threshold of which window has fired, so that it fires once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from llmledger.store.types import JsonType

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("limit_usd", sa.BigInteger, nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("tz", sa.String(64), nullable=True),
        sa.Column("scope", JsonType, nullable=True),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("thresholds", JsonType, nullable=True),
        sa.Column("notify", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_budgets"),
    )
    op.create_table(
        "budget_reservations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("budget", sa.String(64), nullable=False),
        sa.Column("amount_usd", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("owner_host", sa.String(255), nullable=True),
        sa.Column("owner_pid", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", "budget", name="pk_budget_reservations"),
    )
    op.create_index(
        "ix_budget_reservations_budget_expires_at",
        "budget_reservations",
        ["budget", "expires_at"],
    )
    op.create_table(
        "budget_alerts",
        sa.Column("budget", sa.String(64), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("fired_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "budget", "window_start", "kind", "threshold", name="pk_budget_alerts"
        ),
    )


def downgrade() -> None:
    op.drop_table("budget_alerts")
    op.drop_index("ix_budget_reservations_budget_expires_at", "budget_reservations")
    op.drop_table("budget_reservations")
    op.drop_table("budgets")
