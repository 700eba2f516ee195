"""The request and response bodies of the service's writes (``POST /v1/...``).

Lengths follow the store's columns, so a value the store could not hold is a 422 naming the
field rather than a refused write. Times are ISO 8601; one without a zone is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from llmledger.records import CallRecord
from llmledger.store.schema import TerminalRunStatus
from llmledger.values import EARLIEST, LATEST

__all__ = [
    "MAX_BATCH_ITEMS",
    "RUN_ID_PATTERN",
    "CallBatch",
    "CallBatchResult",
    "CallItem",
    "IngestedCall",
    "PayloadItem",
    "RejectedItem",
    "RunCreate",
    "RunFinish",
    "RunJSON",
    "RunResult",
    "StatusEventCreate",
    "StatusEventResult",
    "TotalsJSON",
    "storable_problem",
]

#: The most items one ``POST .../calls`` may hold; more is a 413.
MAX_BATCH_ITEMS = 1000
#: A run id a client may choose: 1 to 32 letters, digits, ``_`` or ``-``.
RUN_ID_PATTERN = r"^[0-9A-Za-z_-]{1,32}$"


def _in_range(value: datetime) -> datetime:
    at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST <= at < LATEST:
        raise ValueError("outside the accepted range (2000-01-01 to 2100-01-01 UTC)")
    return at.astimezone(UTC)


Instant = Annotated[datetime, AfterValidator(_in_range)]
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN)]
_Forbid = ConfigDict(extra="forbid")


def storable_problem(value: Any) -> str | None:
    """Why ``value`` (a string, or JSON metadata) cannot be stored on every backend, or None:
    a NUL character (PostgreSQL holds none, in text or in JSON) or an integer beyond 64 bits
    (the JSON encoder's limit)."""
    if isinstance(value, str):
        return "contains a NUL character, which the store cannot hold" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = storable_problem(key) or storable_problem(item)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for item in value:
            problem = storable_problem(item)
            if problem:
                return problem
        return None
    if type(value) is int and not -(2**63) <= value < 2**64:
        return "holds an integer beyond 64 bits"
    return None


class _Input(BaseModel):
    """A request body: unknown fields are refused, and so is a value the store cannot hold
    (422 naming the field)."""

    model_config = _Forbid

    @field_validator("*")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = storable_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class RunCreate(_Input):
    """``POST /v1/runs``: a run to open. With ``id``, posting it again returns the stored run
    (same kind) instead of a second one."""

    id: RunId | None = Field(None, description="Client-chosen id; makes the post idempotent.")
    kind: str = Field(min_length=1, max_length=32, description="session, plan, task, ...")
    name: str | None = Field(None, max_length=4096)
    key: str | None = Field(None, max_length=4096, description="Your own id (a task key).")
    parent_id: RunId | None = None
    parent_key: str | None = Field(
        None, max_length=4096, description="Parent: the newest run with this key."
    )
    agent_id: str | None = Field(None, max_length=128)
    agent_ids: list[Annotated[str, Field(max_length=128)]] | None = None
    attempt: int | None = Field(None, ge=0, le=2**31 - 1)
    command_name: str | None = Field(None, max_length=128)
    action: str | None = Field(None, max_length=128)
    invocation_kind: str | None = Field(None, max_length=64)
    metadata: dict[str, Any] | None = None
    started_at: Instant | None = None
    host: str | None = Field(
        None, max_length=255, description="The client's machine (owner_host, metadata.host)."
    )

    @model_validator(mode="after")
    def _one_parent(self) -> RunCreate:
        if self.parent_id is not None and self.parent_key is not None:
            raise ValueError("give parent_id or parent_key, not both")
        return self


class RunFinish(_Input):
    """``POST /v1/runs/{id}/finish``: the terminal status (and roll-up) of a run."""

    status: TerminalRunStatus
    finished_at: Instant | None = Field(None, description="Default: when the server gets it.")
    metadata: dict[str, Any] | None = Field(None, description="Merged into the run's metadata.")


class TotalsJSON(BaseModel):
    """Usage and cost totals: a token field is null where no call reported it, ``cost_usd``
    null when no call had a known cost."""

    input_tokens: int | None
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    cache_write_5m_tokens: int | None
    cache_write_1h_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    total_tokens: int | None
    cost_usd: float | None
    unpriced_calls: int
    calls: int


class RunJSON(BaseModel):
    """A run as ``llmledger show --json`` prints it, without its children."""

    id: str
    kind: str
    name: str | None
    key: str | None
    status: str
    attempt: int | None
    attempts: int
    agent: str | None
    started_at: str | None
    finished_at: str | None
    duration_ms: int | None
    own: TotalsJSON
    inclusive: TotalsJSON


class RunResult(BaseModel):
    """The run a write created, found or finished."""

    run: RunJSON


class PayloadItem(BaseModel):
    """A payload as ``Ledger.record`` takes it: a provider response, a Claude Code or Codex
    result, ... (a JSON value), or the text of a JSON-lines stream (a string)."""

    model_config = _Forbid

    payload: Any
    format: str | None = Field(None, max_length=64, description="The parser; default: detected.")


class CallItem(BaseModel):
    """One call in the canonical record (``llmledger schema call``)."""

    model_config = _Forbid

    call: CallRecord


class CallBatch(BaseModel):
    """``POST /v1/calls`` and ``POST /v1/runs/{id}/calls``: up to 1000 items, each
    ``{"call": <CallRecord>}`` or ``{"payload": ..., "format"?: name}``. Each item is checked
    on its own: a bad one is listed in ``rejected`` and the others are stored."""

    model_config = _Forbid

    items: list[dict[str, Any]] = Field(
        description='At most 1000, each {"call": <CallRecord>} (`llmledger schema call`) or '
        '{"payload": <JSON value or JSON-lines text>, "format"?: <parser name>}; each is '
        "checked on its own (a bad one is listed in rejected)."
    )
    host: str | None = Field(
        None, max_length=255, description="Fills the host of calls that name none."
    )

    @field_validator("host")
    @classmethod
    def _storable_host(cls, value: str | None) -> str | None:
        problem = storable_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class RejectedItem(BaseModel):
    """An item (or a line of a JSON-lines payload) that was not stored, and why."""

    index: int
    error: str


class IngestedCall(BaseModel):
    """A call an item held, stored now or before: its key, model and price."""

    index: int
    dedupe_key: str
    model: str | None
    cost_usd: float | None
    cost_status: str


class CallBatchResult(BaseModel):
    """What a batch did: ``accepted`` calls were stored (or replaced a smaller copy),
    ``duplicates`` were stored already; ``calls`` lists both, ``rejected`` the rest."""

    accepted: int
    duplicates: int
    rejected: list[RejectedItem]
    calls: list[IngestedCall]


class StatusEventCreate(_Input):
    """``POST /v1/tasks/{key}/status``: a task moved from one status to another. With ``id``
    a retry is one event; without, identical bodies are one event."""

    id: str | None = Field(None, min_length=1, max_length=64, description="Event id.")
    to_status: str = Field(min_length=1, max_length=32)
    from_status: str | None = Field(None, max_length=32)
    at: Instant | None = Field(None, description="Default: when the server first gets it.")
    agent_id: str | None = Field(None, max_length=128)
    command_name: str | None = Field(None, max_length=128)
    job: str | None = Field(None, max_length=255)
    run_id: RunId | None = None
    metadata: dict[str, Any] | None = None
    project: str | None = Field(None, max_length=255, description="The task's project.")


class StatusEventResult(BaseModel):
    """The event's id and whether this post stored it (false: it was stored already); a
    warning when ``from_status`` was not the task's last known status (stored all the same)."""

    event_id: str
    created: bool
    warning: str | None = None
