"""One model request as the sources see it, before it is priced and stored."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from llmledger.usage import Usage

__all__ = ["Call", "CallStatus", "TokenProvenance", "content_hash"]

CallStatus = Literal["ok", "error"]
TokenProvenance = Literal["reported", "estimated"]


@dataclass(slots=True)
class Call:
    """A model call: its usage plus what is known of who made it, when, and at what cost.

    Produced by every parser in :mod:`llmledger.sources`; priced by :mod:`llmledger.pricing`;
    stored by the ledger. Every field but ``usage`` and ``source`` may be unknown (None).

    ``dedupe_key`` identifies the call across copies (re-imports, streaming snapshots,
    resumed sessions): the provider's message or response id plus the request id where the
    source gives them. When it is None, the store derives a content hash.
    ``reported_cost_usd`` is a cost the source itself stated (Claude Code); it wins over a
    computed one. ``host`` is the machine the call was recorded or imported on (a remote
    ledger and ``import --to`` fill it in; the reports' ``--host`` filter reads it).
    ``subagent`` and ``subagent_type`` name the agent log's subagent that made the call
    (Claude Code's ``agentId`` and its type; None for the main thread); ``branch`` and ``cwd``
    are the git branch and working directory the log records. None of these four is part of
    the content hash.
    """

    usage: Usage
    source: str
    model: str | None = None
    provider: str | None = None
    dedupe_key: str | None = None
    message_id: str | None = None
    request_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    reported_cost_usd: Decimal | None = None
    status: CallStatus = "ok"
    token_provenance: TokenProvenance = "reported"
    session_id: str | None = None
    project: str | None = None
    agent_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    host: str | None = None
    subagent: str | None = None
    subagent_type: str | None = None
    branch: str | None = None
    cwd: str | None = None

    def key(self) -> str:
        """The dedupe key, or a content hash of the call when the source gave no ids."""
        return self.dedupe_key or content_hash(self)


def content_hash(call: Call) -> str:
    """A stable key for a call whose source gave no message or request id.

    The host is not part of it: the same call sent from another machine is the same call."""
    basis = {
        "source": call.source,
        "model": call.model,
        "provider": call.provider,
        "usage": call.usage.to_dict(),
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "finished_at": call.finished_at.isoformat() if call.finished_at else None,
        "session_id": call.session_id,
        "metadata": call.metadata,
    }
    digest = hashlib.sha256(orjson.dumps(basis, option=orjson.OPT_SORT_KEYS, default=str))
    return "sha256:" + digest.hexdigest()[:40]
