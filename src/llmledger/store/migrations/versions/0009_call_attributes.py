"""Call attributes an agent log records: the subagent, the git branch, the working directory.

- ``calls.subagent`` / ``calls.subagent_type``: the Claude Code subagent (its ``agentId``, and
  its ``agentType`` from the ``agent-<id>.meta.json`` beside its transcript) that made the
  call; NULL for the main thread. Not ``agent_id``: that names the agent CLI (claude-code,
  codex), a low-cardinality label of the metrics and the ``--agent`` filter, while a
  subagent id is new on every Task call.
- ``calls.branch``: the git branch the log line records (Claude Code ``gitBranch``, Codex
  ``session_meta.git.branch``); ``calls.cwd``: the working directory it records.

Nullable columns, no index (the ``--branch`` filter reads ``calls`` as ``--host`` does), no
backfill: calls imported before stay NULL in them.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("subagent", sa.String(128)),
    ("subagent_type", sa.String(128)),
    ("branch", sa.String(255)),
    ("cwd", sa.Text()),
)


def upgrade() -> None:
    # Adding a nullable column rebuilds nothing on either engine: the calls triggers stay.
    for name, type_ in _COLUMNS:
        op.add_column("calls", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column no index or trigger names in place, as PostgreSQL does:
    # no table rebuild, so the triggers on calls stay.
    for name, _ in reversed(_COLUMNS):
        op.execute(f"ALTER TABLE calls DROP COLUMN {name}")
