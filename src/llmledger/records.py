"""The canonical JSON records: a call as the HTTP service takes it and a remote ledger sends it.

A :class:`CallRecord` is a :class:`~llmledger.call.Call` in JSON: the usage buckets, who made
the call, when, at what reported cost. The service validates a posted call with it, the remote
ledger writes it to its spool, and ``llmledger schema call`` prints its JSON Schema. Unknown is
not zero here either: a bucket the source did not report is ``null`` (or absent), never 0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmledger.call import Call, content_hash
from llmledger.usage import MAX_TOKENS, Usage
from llmledger.values import EARLIEST, LATEST, MAX_USD

__all__ = ["PLAIN_FIELDS", "CallRecord", "UsageRecord", "call_of_record", "record_of_call"]

_Count = Field(default=None, ge=0, le=MAX_TOKENS)


class UsageRecord(BaseModel):
    """Token counts of one call in llmledger's non-overlapping buckets (docs/sources.md):
    ``input_tokens`` excludes cache reads and writes; ``output_tokens`` includes reasoning."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int | None = _Count
    cache_read_tokens: int | None = _Count
    cache_write_tokens: int | None = _Count
    cache_write_5m_tokens: int | None = _Count
    cache_write_1h_tokens: int | None = _Count
    output_tokens: int | None = _Count
    reasoning_tokens: int | None = _Count


class CallRecord(BaseModel):
    """One model call, canonical. Only ``usage`` is required.

    ``dedupe_key`` identifies the call across copies and retries: storing a record whose key
    is stored already changes nothing (unless it has more tokens: a later streaming snapshot).
    Without one, the key is a hash of the record's content, so a retried post is still
    stored once. ``reported_cost_usd`` is a cost the source stated (a number or a decimal
    string); it wins over a computed one. ``host`` names the machine the call was recorded
    on (not part of the content hash: the same call from two machines is one call).
    ``subagent``/``subagent_type`` name the subagent that made the call (None: the main
    thread); ``branch`` and ``cwd`` the git branch and working directory it ran in.
    """

    model_config = ConfigDict(extra="forbid")

    usage: UsageRecord
    source: str = Field(default="api", min_length=1, max_length=48)
    model: str | None = Field(default=None, max_length=200)
    provider: str | None = Field(default=None, max_length=64)
    dedupe_key: str | None = Field(default=None, min_length=1, max_length=255)
    message_id: str | None = Field(default=None, max_length=255)
    request_id: str | None = Field(default=None, max_length=255)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = Field(default=None, ge=0)
    reported_cost_usd: Decimal | None = Field(default=None, ge=0, lt=MAX_USD)
    status: Literal["ok", "error"] = "ok"
    token_provenance: Literal["reported", "estimated"] = "reported"
    session_id: str | None = Field(default=None, max_length=255)
    project: str | None = Field(default=None, max_length=4096)
    agent_id: str | None = Field(default=None, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)
    host: str | None = Field(default=None, max_length=255)
    subagent: str | None = Field(default=None, max_length=128)
    subagent_type: str | None = Field(default=None, max_length=128)
    branch: str | None = Field(default=None, max_length=255)
    cwd: str | None = Field(default=None, max_length=4096)

    @field_validator("started_at", "finished_at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        at = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        if not EARLIEST <= at < LATEST:
            raise ValueError("outside the accepted range (2000-01-01 to 2100-01-01 UTC)")
        return at.astimezone(UTC)

    @field_validator("reported_cost_usd")
    @classmethod
    def _finite(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and not value.is_finite():
            raise ValueError("not a finite number")
        return value


def call_of_record(record: CallRecord) -> Call:
    """The :class:`Call` a record describes, with its dedupe key (a content hash when the
    record has none). Raises :class:`~llmledger.errors.UsageError` naming the field when the
    buckets contradict each other (reasoning above output, a cache split above its total)."""
    call = Call(
        usage=Usage(**record.usage.model_dump()),
        source=record.source,
        model=record.model,
        provider=record.provider,
        dedupe_key=record.dedupe_key,
        message_id=record.message_id,
        request_id=record.request_id,
        started_at=record.started_at,
        finished_at=record.finished_at,
        duration_ms=record.duration_ms,
        reported_cost_usd=record.reported_cost_usd,
        status=record.status,
        token_provenance=record.token_provenance,
        session_id=record.session_id,
        project=record.project,
        agent_id=record.agent_id,
        metadata=dict(record.metadata),
        host=record.host,
        subagent=record.subagent,
        subagent_type=record.subagent_type,
        branch=record.branch,
        cwd=record.cwd,
    )
    if call.dedupe_key is None:
        call.dedupe_key = content_hash(call)
    return call


#: The record's fields that hold a call's value as it is (text and numbers, no conversion).
PLAIN_FIELDS: tuple[str, ...] = (
    "source",
    "model",
    "provider",
    "dedupe_key",
    "message_id",
    "request_id",
    "duration_ms",
    "session_id",
    "project",
    "agent_id",
    "host",
    "subagent",
    "subagent_type",
    "branch",
    "cwd",
)


def record_of_call(call: Call) -> dict[str, Any]:
    """The JSON object of ``call`` (a :class:`CallRecord`'s fields; the cost as a decimal
    string, times as ISO 8601, fields that are unknown left out)."""
    counts = call.usage.to_dict()
    out: dict[str, Any] = {"usage": {k: v for k, v in counts.items() if v is not None}}
    for name in PLAIN_FIELDS:
        value = getattr(call, name)
        if value is not None:
            out[name] = value
    out["usage"].pop("total_tokens", None)
    for name in ("started_at", "finished_at"):
        at: datetime | None = getattr(call, name)
        if at is not None:
            out[name] = at.isoformat()
    if call.reported_cost_usd is not None:
        out["reported_cost_usd"] = str(call.reported_cost_usd)
    if call.status != "ok":
        out["status"] = call.status
    if call.token_provenance != "reported":
        out["token_provenance"] = call.token_provenance
    if call.metadata:
        out["metadata"] = call.metadata
    return out
