"""``task_status_events.project``: the project a task belongs to (a task is its key and,
when given, its project), indexed with the key and time for the forecasts.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_INDEX = "ix_task_status_events_project_task_key_at"


def upgrade() -> None:
    # A nullable column: no table rebuild on either engine.
    op.add_column("task_status_events", sa.Column("project", sa.Text, nullable=True))
    op.create_index(_INDEX, "task_status_events", ["project", "task_key", "at"])


def downgrade() -> None:
    op.drop_index(_INDEX, "task_status_events")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("task_status_events", recreate="always") as batch:
            batch.drop_column("project")
    else:
        op.drop_column("task_status_events", "project")
