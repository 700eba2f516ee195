"""The rows an import's workers build: the columns of a ``calls`` row (less its id) in the
order the workers fill them, and the run a session's rows are filed under.

Spelled out here, not read from the schema, so that the workers need no SQLAlchemy (a test
holds the columns to the schema). Pure.
"""

from __future__ import annotations

import uuid

from llmledger.agents import BY_NAME

__all__ = [
    "AGENT_IDS",
    "DEDUPE_KEY",
    "MESSAGE_ID",
    "NARROW",
    "PROJECT",
    "ROW_AT",
    "ROW_COLUMNS",
    "RUN_ID",
    "SESSION_ID",
    "SHARED_COLUMNS",
    "STARTED_AT",
    "SYNTHETIC",
    "run_of",
    "session_run_id",
]

#: The columns the fast paths fill with the same value on every row: a row built by them
#: leaves these out (see ``FileResult.shared``), so they come last.
SHARED_COLUMNS = (
    "source",
    "provider",
    "finished_at",
    "duration_ms",
    "reasoning_tokens",
    "currency",
    "token_provenance",
    "recorded_at",
    # Unknown to a local import (``import --to`` tags the calls it sends instead).
    "host",
)
#: Columns of a row as the worker builds it: the ``calls`` table's, less the id (spelled out,
#: so that workers need no SQLAlchemy; a test holds it to the schema).
ROW_COLUMNS: tuple[str, ...] = (
    "dedupe_key",
    "run_id",
    "model",
    "message_id",
    "request_id",
    "session_id",
    "project",
    "agent_id",
    "started_at",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "cost_usd",
    "cost_status",
    "price_version",
    "status",
    "metadata",
    "subagent",
    "subagent_type",
    "branch",
    "cwd",
    *SHARED_COLUMNS,
)
#: The length of a row the fast paths build.
NARROW = len(ROW_COLUMNS) - len(SHARED_COLUMNS)
#: Where each column is in a row.
ROW_AT = {name: i for i, name in enumerate(ROW_COLUMNS)}
#: Index of ``dedupe_key``, ``run_id``, ``message_id``, ``session_id``, ``project`` and
#: ``started_at`` in a row.
DEDUPE_KEY = ROW_COLUMNS.index("dedupe_key")
RUN_ID = ROW_COLUMNS.index("run_id")
MESSAGE_ID = ROW_COLUMNS.index("message_id")
PROJECT = ROW_COLUMNS.index("project")
SESSION_ID = ROW_COLUMNS.index("session_id")
STARTED_AT = ROW_COLUMNS.index("started_at")
#: The agent id of each agent's calls, by agent name.
AGENT_IDS = {name: agent.agent_id for name, agent in BY_NAME.items()}
#: Claude Code's placeholder model for an error it made up locally: no API call, no cost.
SYNTHETIC = "<synthetic>"

#: Namespace of the session run ids (any fixed UUID would do; this one must never change).
_SESSION_RUNS = uuid.UUID("5b0d3c1e-8f4a-4c52-9a57-6d1f2e7b9c40")
_RUN_IDS: dict[str, str] = {}


def session_run_id(session_id: str) -> str:
    """The id of the run an import files a session's calls under, derived from the session id
    so that the workers can put it in the rows they build. (A ledger may hold session runs
    that older versions created under random ids; the importer moves their rows there.)"""
    run_id = _RUN_IDS.get(session_id)
    if run_id is None:
        if len(_RUN_IDS) > 100_000:
            _RUN_IDS.clear()
        run_id = _RUN_IDS[session_id] = uuid.uuid5(_SESSION_RUNS, session_id).hex
    return run_id


def run_of(session_id: str | None) -> str | None:
    """The run a row of ``session_id`` is filed under (None without a session)."""
    return None if session_id is None else session_run_id(session_id)
