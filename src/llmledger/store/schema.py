"""The ledger's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

This module describes the schema at the newest migration. Alembic migrations in
``store/migrations/versions`` create it step by step; ``tests/test_migrations.py`` pins the
column list so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from llmledger.store.metrics_rollup import KEY_COLUMNS as METRICS_KEY_COLUMNS
from llmledger.store.metrics_rollup import MEASURE_COLUMNS as METRICS_MEASURE_COLUMNS
from llmledger.store.rollup import MEASURE_COLUMNS
from llmledger.store.types import BigIntId, JsonType, Money, Timestamp
from llmledger.usage import BUCKETS

__all__ = [
    "CALL_STATUSES",
    "COST_STATUSES",
    "RUN_STATUSES",
    "TERMINAL_RUN_STATUSES",
    "TOKEN_COLUMNS",
    "TOKEN_PROVENANCES",
    "RunStatus",
    "TerminalRunStatus",
    "api_keys",
    "budget_alerts",
    "budget_reservations",
    "budgets",
    "call_metrics",
    "call_rollup",
    "call_rollup_hour",
    "calls",
    "import_state",
    "metadata",
    "runs",
    "task_status_events",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: How a run ended: the statuses a run is finalized with.
TerminalRunStatus = Literal[
    "succeeded", "failed", "timed_out", "cancelled", "interrupted", "skipped", "paused_budget"
]
#: A run that has not ended is "running"; every other status is terminal.
RunStatus = Literal["running", TerminalRunStatus]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset(get_args(TerminalRunStatus))
RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
CALL_STATUSES = frozenset({"ok", "error"})
COST_STATUSES = frozenset({"reported", "computed", "included", "unpriced"})
TOKEN_PROVENANCES = frozenset({"reported", "estimated"})

#: Usage buckets stored on calls (and rolled up on runs); the names of ``Usage``'s buckets.
TOKEN_COLUMNS: tuple[str, ...] = BUCKETS


def _token_columns() -> list[Column[int]]:
    return [Column(name, BigInteger, nullable=True) for name in TOKEN_COLUMNS]


runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("parent_id", String(32), ForeignKey("runs.id"), nullable=True),
    Column("root_id", String(32), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", Text, nullable=True),
    Column("key", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=True),
    Column("agent_id", String(128), nullable=True),
    Column("agent_ids", JsonType, nullable=True),
    Column("command_name", String(128), nullable=True),
    Column("action", String(128), nullable=True),
    Column("invocation_kind", String(64), nullable=True),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=True),
    Column("duration_ms", BigInteger, nullable=True),
    Column("owner_host", String(255), nullable=True),
    Column("owner_pid", Integer, nullable=True),
    Column("metadata", JsonType, nullable=True),
    # Inclusive usage roll-up, written with the terminal status in one transaction.
    *_token_columns(),
    Column("cost_usd", Money, nullable=True),
    Column("unpriced_calls", Integer, nullable=True),
    Column("call_count", Integer, nullable=True),
    Index(None, "parent_id"),
    Index(None, "root_id"),
    Index(None, "kind", "key"),
    Index(None, "started_at"),
    Index(None, "status"),
    Index(None, "agent_id"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("dedupe_key", String(255), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=True),
    Column("source", String(48), nullable=False),
    Column("provider", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("message_id", String(255), nullable=True),
    Column("request_id", String(255), nullable=True),
    Column("session_id", String(255), nullable=True),
    Column("project", Text, nullable=True),
    Column("agent_id", String(128), nullable=True),
    Column("started_at", Timestamp, nullable=True),
    Column("finished_at", Timestamp, nullable=True),
    Column("duration_ms", BigInteger, nullable=True),
    *_token_columns(),
    Column("cost_usd", Money, nullable=True),
    Column("cost_status", String(16), nullable=False),
    Column("currency", String(8), nullable=False, server_default="USD"),
    Column("price_version", String(64), nullable=True),
    Column("status", String(8), nullable=False),
    Column("token_provenance", String(16), nullable=False),
    Column("metadata", JsonType, nullable=True),
    Column("recorded_at", Timestamp, nullable=False),
    # The machine the call was recorded or imported on, when known (0005).
    Column("host", String(255), nullable=True),
    # What the agent log records of the call (0009): the Claude Code subagent (agentId) and
    # its type, the git branch and the working directory; NULL where not recorded.
    Column("subagent", String(128), nullable=True),
    Column("subagent_type", String(128), nullable=True),
    Column("branch", String(255), nullable=True),
    Column("cwd", Text, nullable=True),
    # An index, not a constraint, so that a bulk load can drop it and build it once (0004).
    Index("uq_calls_dedupe_key", "dedupe_key", unique=True),
    Index(None, "run_id"),
    Index(None, "started_at"),
    Index(None, "source", "started_at"),
    Index(None, "session_id"),
    Index(None, "message_id"),
)

task_status_events = Table(
    "task_status_events",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=True),
    Column("task_key", Text, nullable=True),
    Column("from_status", String(32), nullable=True),
    Column("to_status", String(32), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("command_name", String(128), nullable=True),
    Column("job", String(255), nullable=True),
    Column("agent_id", String(128), nullable=True),
    Column("metadata", JsonType, nullable=True),
    # A client-chosen id that makes posting the event idempotent (0005); NULL when none.
    Column("event_id", String(64), nullable=True),
    # The project a task belongs to, when the writer names one (0010; forecast/).
    Column("project", Text, nullable=True),
    Index(None, "task_key", "at"),
    Index(None, "project", "task_key", "at"),
    Index(None, "run_id", "at"),
    Index("uq_task_status_events_event_id", "event_id", unique=True),
)

import_state = Table(
    "import_state",
    metadata,
    Column("path", Text, primary_key=True),
    Column("source", String(48), nullable=False),
    Column("device", BigInteger, nullable=True),
    Column("inode", BigInteger, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("head_sha256", String(64), nullable=True),
    Column("lines", BigInteger, nullable=False, server_default="0"),
    Column("calls", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", Timestamp, nullable=False),
)

#: The service's API keys (0005): only the SHA-256 (hex) of each key is stored.
api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("scope", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp, nullable=True),
    Column("last_used_at", Timestamp, nullable=True),
    Index("uq_api_keys_key_hash", "key_hash", unique=True),
)


#: Call totals per 15-minute bucket, kept by triggers on ``calls`` (see ``store/rollup.py``).
call_rollup = Table(
    "call_rollup",
    metadata,
    Column("bucket", BigInteger, primary_key=True),
    Column("source", String(48), primary_key=True),
    Column("model", String(200), primary_key=True),
    *(Column(name, BigInteger, nullable=False) for name in MEASURE_COLUMNS),
)

#: ``call_rollup`` summed per hour (0011), kept by triggers on ``call_rollup`` (see
#: ``store/hour_rollup.py``).
call_rollup_hour = Table(
    "call_rollup_hour",
    metadata,
    Column("hour", BigInteger, primary_key=True),
    Column("source", String(48), primary_key=True),
    Column("model", String(200), primary_key=True),
    *(Column(name, BigInteger, nullable=False) for name in MEASURE_COLUMNS),
)


#: Call totals per label set of ``GET /metrics`` (0007), kept by triggers on ``calls`` (see
#: ``store/metrics_rollup.py``).
call_metrics = Table(
    "call_metrics",
    metadata,
    # As long as the calls columns they come from (agent: agent_id).
    *(
        Column(name, String(length), primary_key=True)
        for name, length in zip(METRICS_KEY_COLUMNS, (64, 200, 48, 128, 8, 16), strict=True)
    ),
    *(Column(name, BigInteger, nullable=False) for name in METRICS_MEASURE_COLUMNS),
)


#: Spending limits (0008): see ``llmledger.budgets``. ``scope`` maps a scope key (agent,
#: workflow, project, model, provider, source, host) to the value a call must have.
budgets = Table(
    "budgets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("limit_usd", Money, nullable=False),
    Column("window", String(32), nullable=False),
    Column("tz", String(64), nullable=True),
    Column("scope", JsonType, nullable=True),
    Column("action", String(8), nullable=False),
    Column("thresholds", JsonType, nullable=True),
    Column("notify", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

#: Live reservations against budgets (0008): one row per reservation and budget, deleted when
#: the call is recorded (settled), released, or past ``expires_at``.
budget_reservations = Table(
    "budget_reservations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("budget", String(64), primary_key=True),
    Column("amount_usd", Money, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("owner_host", String(255), nullable=True),
    Column("owner_pid", Integer, nullable=True),
    Index(None, "budget", "expires_at"),
)

#: Budget warnings already sent (0008), one row per budget, window, kind and threshold, so that
#: each fires once per window across processes.
budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("budget", String(64), primary_key=True),
    Column("window_start", Timestamp, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("threshold", Integer, primary_key=True),
    Column("fired_at", Timestamp, nullable=False),
)
