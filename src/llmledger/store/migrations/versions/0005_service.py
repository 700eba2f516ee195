"""The service's tables and columns: API keys, status event ids, the host a call came from.

- ``api_keys``: the keys of ``llmledger serve``, stored as the SHA-256 of the key (the key
  itself is printed once by ``llmledger keys create`` and stored nowhere).
- ``task_status_events.event_id``: a client-chosen id that makes posting an event idempotent
  (unique where given; NULL for events recorded locally without one).
- ``calls.host``: the machine a call was recorded or imported on (``--host`` report filter).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_api_keys"),
    )
    op.create_index("uq_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    # Adding a nullable column rebuilds nothing on either engine: the calls triggers stay.
    op.add_column("task_status_events", sa.Column("event_id", sa.String(64), nullable=True))
    op.create_index(
        "uq_task_status_events_event_id", "task_status_events", ["event_id"], unique=True
    )
    op.add_column("calls", sa.Column("host", sa.String(255), nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        from llmledger.store import rollup

        # SQLite rebuilds the table to drop a column, and the triggers go with the old one.
        rollup.drop_triggers(conn)
        with op.batch_alter_table("calls", recreate="always") as batch:
            batch.drop_column("host")
        rollup.create_triggers(conn)
        with op.batch_alter_table("task_status_events", recreate="always") as batch:
            batch.drop_index("uq_task_status_events_event_id")
            batch.drop_column("event_id")
    else:
        op.drop_column("calls", "host")
        op.drop_index("uq_task_status_events_event_id", "task_status_events")
        op.drop_column("task_status_events", "event_id")
    op.drop_index("uq_api_keys_key_hash", "api_keys")
    op.drop_table("api_keys")
