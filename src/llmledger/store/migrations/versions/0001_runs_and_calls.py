"""Runs and calls: the run tree and the append-only call ledger.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TOKENS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _tokens() -> list[sa.Column[int]]:
    return [sa.Column(name, sa.BigInteger, nullable=True) for name in _TOKENS]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("root_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.Text, nullable=True),
        sa.Column("key", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("agent_ids", _JSON, nullable=True),
        sa.Column("command_name", sa.String(128), nullable=True),
        sa.Column("action", sa.String(128), nullable=True),
        sa.Column("invocation_kind", sa.String(64), nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=False),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
        sa.Column("owner_host", sa.String(255), nullable=True),
        sa.Column("owner_pid", sa.Integer, nullable=True),
        sa.Column("metadata", _JSON, nullable=True),
        *_tokens(),
        sa.Column("cost_usd", sa.BigInteger, nullable=True),
        sa.Column("unpriced_calls", sa.Integer, nullable=True),
        sa.Column("call_count", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(["parent_id"], ["runs.id"], name="fk_runs_parent_id_runs"),
    )
    op.create_index("ix_runs_parent_id", "runs", ["parent_id"])
    op.create_index("ix_runs_root_id", "runs", ["root_id"])
    op.create_index("ix_runs_kind_key", "runs", ["kind", "key"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_agent_id", "runs", ["agent_id"])

    op.create_table(
        "calls",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("source", sa.String(48), nullable=False),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(255), nullable=True),
        sa.Column("session_id", sa.String(255), nullable=True),
        sa.Column("project", sa.Text, nullable=True),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=True),
        *_tokens(),
        sa.Column("cost_usd", sa.BigInteger, nullable=True),
        sa.Column("cost_status", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False, server_default="USD"),
        sa.Column("price_version", sa.String(64), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("token_provenance", sa.String(16), nullable=False),
        sa.Column("metadata", _JSON, nullable=True),
        sa.Column("recorded_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        sa.UniqueConstraint("dedupe_key", name="uq_calls_dedupe_key"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_calls_run_id_runs"),
    )
    op.create_index("ix_calls_run_id", "calls", ["run_id"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_model", "calls", ["model"])
    op.create_index("ix_calls_agent_id", "calls", ["agent_id"])
    op.create_index("ix_calls_source_started_at", "calls", ["source", "started_at"])
    op.create_index("ix_calls_session_id", "calls", ["session_id"])
    op.create_index("ix_calls_message_id", "calls", ["message_id"])


def downgrade() -> None:
    op.drop_table("calls")
    op.drop_table("runs")
