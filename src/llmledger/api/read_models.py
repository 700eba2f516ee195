"""The documents the reads return, as pydantic models: what the service's OpenAPI and
``llmledger schema`` describe. They describe; they do not build: the documents are built
once, in :mod:`llmledger.reports.documents` and :mod:`llmledger.reports.subjects`, for the CLI
and the service alike, and the tests hold the two to each other.

Every field is listed (``additionalProperties: false``) and every field a document always
carries is required, null where unknown: a token count no call reported is ``null``, never 0;
``cost_usd`` is ``null`` when no call had a known cost, and ``unpriced_calls`` says how many
had none. Times are ISO 8601 with their offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentTotals",
    "Block",
    "BlocksReport",
    "BurnRate",
    "ModelTotals",
    "ModelUsage",
    "PeriodReport",
    "PeriodRow",
    "Projection",
    "ReportTotals",
    "RunDocument",
    "RunNode",
    "RunSummary",
    "RunTotals",
    "RunsDocument",
    "SessionRow",
    "SessionsReport",
    "SubjectUsage",
    "TokenLimit",
    "TokensReport",
    "TokensRow",
]

_Tokens = Field(ge=0, description="Tokens; null when no call reported this bucket.")
_Cost = Field(description="USD: the sum of the known costs; null when no call had one.")
_Unpriced = Field(ge=0, description="Calls without a known cost (not counted in cost_usd).")
_Calls = Field(ge=0, description="Calls counted.")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportTotals(_Closed):
    """Totals in the reports' shape (``llmledger.totals.JSON_FIELDS``), in this order."""

    input_tokens: int | None = _Tokens
    output_tokens: int | None = _Tokens
    cache_write_tokens: int | None = _Tokens
    cache_read_tokens: int | None = _Tokens
    reasoning_tokens: int | None = _Tokens
    total_tokens: int | None = _Tokens
    cost_usd: float | None = _Cost
    unpriced_calls: int = _Unpriced
    calls: int = _Calls


class RunTotals(_Closed):
    """Totals of a run (``show``/``runs``: ``llmledger.totals.RUN_FIELDS``): every stored
    bucket in storage order, with the cache-write split by lifetime."""

    input_tokens: int | None = _Tokens
    cache_read_tokens: int | None = _Tokens
    cache_write_tokens: int | None = _Tokens
    cache_write_5m_tokens: int | None = _Tokens
    cache_write_1h_tokens: int | None = _Tokens
    output_tokens: int | None = _Tokens
    reasoning_tokens: int | None = _Tokens
    total_tokens: int | None = _Tokens
    cost_usd: float | None = _Cost
    unpriced_calls: int = _Unpriced
    calls: int = _Calls


# -- runs --------------------------------------------------------------------------------------


class RunSummary(_Closed):
    """A run in ``runs --json`` / ``GET /v1/runs``: its row and its inclusive totals."""

    id: str
    kind: str
    name: str | None
    key: str | None = Field(description="The caller's own id for the run (a task key).")
    status: str = Field(description="running, succeeded, failed, cancelled, ...")
    attempt: int | None = Field(description="The attempt number of an attempt run.")
    agent: str | None = Field(description="The agent id that did the work.")
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    inclusive: RunTotals = Field(description="The usage of the run's whole subtree.")


class RunNode(_Closed):
    """A run in ``show --json`` / ``GET /v1/runs/{ref}``, with its subtree."""

    id: str
    kind: str
    name: str | None
    key: str | None = Field(description="The caller's own id for the run (a task key).")
    status: str = Field(description="running, succeeded, failed, cancelled, ...")
    attempt: int | None = Field(description="The attempt number of an attempt run.")
    attempts: int = Field(ge=0, description="Attempt runs directly under this run.")
    agent: str | None = Field(description="The agent id that did the work.")
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    own: RunTotals = Field(description="The usage of the calls recorded in this run itself.")
    inclusive: RunTotals = Field(description="The usage of the run's whole subtree.")
    children: list[RunNode] = Field(description="The runs directly under it, oldest first.")


class RunDocument(_Closed):
    """``llmledger show REF --json``."""

    run: RunNode


class RunsDocument(_Closed):
    """``llmledger runs --json``: newest first."""

    runs: list[RunSummary]


# -- reports -----------------------------------------------------------------------------------


class ModelTotals(ReportTotals):
    """One model's totals in a row's breakdown."""

    model: str | None = Field(description="The model; null for calls that named none.")


class PeriodRow(ReportTotals):
    """A day, week (starting Monday) or month of a period report."""

    period: str | None = Field(
        description="2026-11-30 (day, and a week's Monday) or 2026-11 (month); null for "
        "calls with no time."
    )
    project: str | None = Field(
        default=None,
        description="With by_project (--by-project) only: the row's project (null for calls "
        "with none); a period's rows then add up to its total.",
    )
    models: list[str] = Field(description="The models used, by name.")
    breakdown: list[ModelTotals] = Field(description="Totals per model, by model name.")


class AgentTotals(ReportTotals):
    """The calls of a session's main thread, or of one of its subagents."""

    subagent: str | None = Field(
        description="The Claude Code subagent (its agentId); null for the main thread."
    )
    subagent_type: str | None = Field(
        description="The subagent's type (Explore, general-purpose, ...) when its log names it."
    )


class SessionRow(ReportTotals):
    """An agent session of the sessions report."""

    period: str | None = Field(description="The session id (as session_id).")
    models: list[str] = Field(description="The models used, by name.")
    breakdown: list[ModelTotals] = Field(description="Totals per model, by model name.")
    session_id: str | None
    project: str | None
    first_at: datetime | None = Field(description="The first call, in the report's zone.")
    last_at: datetime | None = Field(description="The last call, in the report's zone.")
    agents: list[AgentTotals] = Field(
        description="Totals of the main thread and of each subagent, main thread first (they "
        "add up to the session's)."
    )


class PeriodReport(_Closed):
    """``llmledger daily|weekly|monthly --json``: a row per period, oldest first."""

    rows: list[PeriodRow]
    totals: ReportTotals


class SessionsReport(_Closed):
    """``llmledger sessions --json``: a row per session, by last activity."""

    rows: list[SessionRow]
    totals: ReportTotals


class BurnRate(_Closed):
    """The active block's rate between its first and last call."""

    tokens_per_minute: float
    tokens_per_minute_indicator: float = Field(description="Input and output tokens only.")
    cost_per_hour: float


class Projection(_Closed):
    """The active block's totals projected to its end at the current burn rate."""

    total_tokens: float
    cost_usd: float
    remaining_minutes: float


class TokenLimit(_Closed):
    """A block against ``blocks --token-limit``: its share, and the active block's projection."""

    limit: int = Field(gt=0, description="Tokens: the number given, or the largest past block's.")
    percent_used: float = Field(description="The block's tokens, in percent of the limit.")
    projected_tokens: int | None = Field(description="The active block's only.")
    projected_percent: float | None = Field(description="The active block's only.")
    status: Literal["ok", "warning", "exceeds"] = Field(
        description="warning past 80% of the limit; judged on the projection where there is one."
    )


class Block(ReportTotals):
    """A billing window (or the gap between two) of the blocks report."""

    start: datetime
    end: datetime
    first_at: datetime | None
    last_at: datetime | None
    is_gap: bool
    is_active: bool
    entries: int = Field(ge=0, description="Calls in the block.")
    models: list[str]
    burn_rate: BurnRate | None = Field(description="The active block's only.")
    projection: Projection | None = Field(description="The active block's only.")
    token_limit: TokenLimit | None = Field(description="With --token-limit only; not for gaps.")


class BlocksReport(_Closed):
    """``llmledger blocks --json``: the blocks, oldest first."""

    blocks: list[Block]


class TokensRow(ReportTotals):
    """One combination of the grouped dimensions' values: only the dimensions named in
    ``group_by`` are present (each a string, or null for calls without that value)."""

    project: str | None = None
    agent: str | None = None
    command: str | None = None
    day: str | None = Field(default=None, description="A local date, 2026-11-30.")
    model: str | None = None
    job: str | None = None
    action: str | None = None
    provider: str | None = None
    host: str | None = None
    branch: str | None = Field(default=None, description="The git branch the log recorded.")
    cwd: str | None = Field(default=None, description="The working directory the log recorded.")
    subagent: str | None = Field(
        default=None, description="The Claude Code subagent (agentId); null: the main thread."
    )
    subagent_type: str | None = Field(
        default=None, description="The subagent's type (Explore, general-purpose, ...)."
    )
    duration_ms: int | None = Field(description="The calls' summed duration, if reported.")


class TokensReport(_Closed):
    """``llmledger tokens --group-by ... --json``: largest cost first."""

    group_by: list[str]
    rows: list[TokensRow]
    totals: ReportTotals


# -- usage of a workflow, task or agent --------------------------------------------------------


class ModelUsage(_Closed):
    """One model's own and inclusive totals."""

    model: str | None = Field(description="The model; null for calls that named none.")
    own: ReportTotals
    inclusive: ReportTotals


class SubjectUsage(_Closed):
    """The usage of a workflow or task (every run of that kind with that key) or of an agent
    id: own and inclusive totals, and the same by model (see :mod:`llmledger.reports.subjects`
    for what own and inclusive mean for each)."""

    subject: Literal["workflow", "task", "agent"]
    key: str = Field(description="The workflow or task key, or the agent id.")
    runs: int = Field(ge=0, description="Runs of this workflow or task (the agent's runs).")
    first_started_at: datetime | None
    last_started_at: datetime | None
    own: ReportTotals
    inclusive: ReportTotals
    models: list[ModelUsage] = Field(description="By model name; calls with no model last.")
