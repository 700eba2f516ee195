"""Task status events (velocity, ETA) and the import state of incremental log imports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "task_status_events",
        sa.Column("id", _ID, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("task_key", sa.Text, nullable=True),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("command_name", sa.String(128), nullable=True),
        sa.Column("job", sa.String(255), nullable=True),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("metadata", _JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_status_events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_task_status_events_run_id_runs"),
    )
    op.create_index("ix_task_status_events_task_key_at", "task_status_events", ["task_key", "at"])
    op.create_index("ix_task_status_events_run_id_at", "task_status_events", ["run_id", "at"])

    op.create_table(
        "import_state",
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("source", sa.String(48), nullable=False),
        sa.Column("device", sa.BigInteger, nullable=True),
        sa.Column("inode", sa.BigInteger, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("head_sha256", sa.String(64), nullable=True),
        sa.Column("lines", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("calls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("path", name="pk_import_state"),
    )


def downgrade() -> None:
    op.drop_table("import_state")
    op.drop_table("task_status_events")
