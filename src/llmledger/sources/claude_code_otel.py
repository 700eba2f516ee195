"""Claude Code's own telemetry: its ``claude_code.api_request`` log events.

With ``CLAUDE_CODE_ENABLE_TELEMETRY=1`` and ``OTEL_LOGS_EXPORTER=otlp`` Claude Code sends one
OTel log record per API request (its monitoring docs, "API request event"): ``event.name``
``api_request`` (the record's body is ``claude_code.api_request``), ``event.timestamp``,
``session.id``, ``model``, ``cost_usd``, ``duration_ms``, ``input_tokens``, ``output_tokens``,
``cache_read_tokens``, ``cache_creation_tokens``, ``request_id`` (the Anthropic API's
``request-id``, which the session transcript stores as ``requestId``; present when the API
returns one), ``prompt.id``, ``event.sequence``, ``query_source``, ``speed``, ``effort``, and
the identity attributes ``user.account_uuid``, ``user.email``, ``user.id``,
``organization.id``. Values may arrive as strings (``"1234"``) or numbers.

Counting is Anthropic's (exclusive): ``input_tokens`` excludes cache reads and writes, so
nothing is subtracted. ``cost_usd`` is Claude Code's own figure: the call's reported cost.

The dedupe key is built from the request id (else ``client_request_id``, else the session id
and ``event.sequence``), so a batch the exporter sends again is stored once; the receiver
(:mod:`llmledger.api.otlp_ingest`) matches the request id against calls imported from
the session's transcript, so that a call never counts twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from llmledger.agents import CLAUDE
from llmledger.call import Call
from llmledger.sources._common import Ctx, guess_provider, make_usage, money, timestamp, to_count
from llmledger.sources.anthropic import PROVIDER

__all__ = ["EVENT", "SOURCE", "api_request_call", "is_api_request"]

#: The ``calls.source`` of the calls read from Claude Code's telemetry.
SOURCE = "claude_code_otel"
#: The event's full name (its record's body; ``event.name`` holds ``api_request``).
EVENT = "claude_code.api_request"

_IDENTITY = ("user.account_uuid", "user.account_id", "user.email", "user.id", "organization.id")
_KEPT = (
    "prompt.id",
    "event.sequence",
    "query_source",
    "speed",
    "effort",
    "client_request_id",
    "app.version",
    "terminal.type",
    "agent.name",
    "skill.name",
)


def is_api_request(record: Mapping[str, Any]) -> bool:
    """Whether an OTLP log record (as :mod:`llmledger.sources.otlp` gives it) is an
    ``api_request`` event of Claude Code."""
    name = record["attributes"].get("event.name")
    return (
        name in ("api_request", EVENT)
        or record.get("body") == EVENT
        or record.get("eventName") == EVENT
    )


def _count(attrs: Mapping[str, Any], key: str, ctx: Ctx) -> int | None:
    value = attrs.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ctx.error(f"expected a token count, got {value!r}", field=key) from None
    return to_count(value, ctx, key)


def _text(attrs: Mapping[str, Any], key: str) -> str | None:
    value = attrs.get(key)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def api_request_call(record: Mapping[str, Any], ctx: Ctx) -> Call:
    """The call an ``api_request`` record reports, with its reported cost; raises
    :class:`~llmledger.errors.ParseError` for a count or a cost that cannot be read."""
    attrs: Mapping[str, Any] = {**record.get("resource", {}), **record["attributes"]}
    usage = make_usage(
        ctx,
        input_tokens=_count(attrs, "input_tokens", ctx),
        cache_read_tokens=_count(attrs, "cache_read_tokens", ctx),
        cache_write_tokens=_count(attrs, "cache_creation_tokens", ctx),
        output_tokens=_count(attrs, "output_tokens", ctx),
    )
    cost = money(attrs, "cost_usd", ctx)
    if cost is None and _text(attrs, "cost_usd_micros") is not None:
        micros = _count(attrs, "cost_usd_micros", ctx)
        cost = None if micros is None else Decimal(micros) / 1_000_000
    if cost is not None and cost < 0:
        raise ctx.error(f"must not be negative, got {cost}", field="cost_usd")
    model = _text(attrs, "model")
    session = _text(attrs, "session.id")
    request_id = _text(attrs, "request_id")
    duration = _count(attrs, "duration_ms", ctx)
    at = timestamp(attrs.get("event.timestamp"), ctx, "event.timestamp")
    if at is None and record.get("timeUnixNano"):
        at = timestamp(_iso_of_nanos(int(record["timeUnixNano"])), ctx, "timeUnixNano")
    call = Call(
        usage=usage,
        source=SOURCE,
        model=model,
        provider=guess_provider(model) or PROVIDER,
        dedupe_key=_key(attrs, session, request_id),
        request_id=request_id,
        reported_cost_usd=cost,
        session_id=session,
        agent_id=CLAUDE.agent_id,
        duration_ms=duration,
        host=_text(attrs, "host.name"),
        metadata={
            key: value for key in (*_IDENTITY, *_KEPT) if (value := _text(attrs, key)) is not None
        },
    )
    if at is not None:
        # The event is logged when the response is complete: its time is the call's end.
        call.finished_at = at
        call.started_at = at - timedelta(milliseconds=duration) if duration else at
    return call


def _key(attrs: Mapping[str, Any], session: str | None, request_id: str | None) -> str | None:
    if request_id:
        return f"claude-otel:{request_id}"
    client = _text(attrs, "client_request_id")
    if client:
        return f"claude-otel:client:{client}"
    sequence = _text(attrs, "event.sequence")
    if session and sequence:
        return f"claude-otel:{session}:{sequence}"
    return None  # the store's content hash


def _iso_of_nanos(nanos: int) -> str:
    from datetime import UTC, datetime

    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)).isoformat()
