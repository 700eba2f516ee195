"""OpenTelemetry GenAI spans: ``gen_ai.usage.*`` attributes.

Accepts a span with an attribute map, a list of spans, or an OTLP/JSON export
(``resourceSpans`` → ``scopeSpans`` → ``spans`` with ``[{key, value: {intValue}}]`` attributes).
Current semconv puts cache reads and writes inside ``gen_ai.usage.input_tokens``, so they are
subtracted; older Anthropic instrumentations reported the exclusive count, recognizable when
the cache counts exceed it (trap 18), and then nothing is subtracted.

A span is a model call when its ``gen_ai.operation.name`` is a model operation (``chat``,
``text_completion``, ``generate_content``, ``embeddings``, …) or, without an operation name,
when it carries usage. Agent, workflow and tool spans (``invoke_agent``, ``invoke_workflow``,
``create_agent``, ``execute_tool``) are never calls, even when a framework puts its children's
summed usage on them: counting them too would count those calls twice. The OTLP receiver
(:mod:`llmledger.api.otlp`) reads spans with the same functions (:func:`span_call`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger.call import Call
from llmledger.sources._common import (
    Ctx,
    JsonObj,
    Record,
    Summary,
    as_obj,
    get_list,
    get_obj,
    guess_provider,
    in_time_range,
    make_usage,
    to_count,
)
from llmledger.usage import Usage

FORMAT = "otel_genai_span"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
_REASONING = ("gen_ai.usage.reasoning.output_tokens",)
#: The ``gen_ai.operation.name`` values of a span that is one model request.
MODEL_OPERATIONS = frozenset(
    {"chat", "text_completion", "generate_content", "embeddings", "completion", "responses"}
)
#: The operations of spans that are not model requests but hold them: agent, workflow and
#: tool spans; their run kind in the ledger.
RUN_OPERATIONS = {
    "invoke_workflow": "workflow",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "execute_tool": "tool",
}
_PROVIDERS = {
    "aws.bedrock": "aws-bedrock",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google-vertex",
    "gcp.gen_ai": "google",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
}


def attributes(span: Mapping[str, Any], ctx: Ctx) -> dict[str, Any]:
    """The span's attributes as a map: given as one, or read from OTLP/JSON's key-value list."""
    attrs = span.get("attributes")
    if isinstance(attrs, dict):
        return attrs
    out: dict[str, Any] = {}
    for item in get_list(span, "attributes", ctx):
        entry = as_obj(item, ctx, "attributes[]")
        key, value = entry.get("key"), get_obj(entry, "value", ctx, "attributes[].value")
        if isinstance(key, str) and value:
            # OTLP/JSON AnyValue: one of stringValue, intValue (a string), doubleValue, ...
            out[key] = next(iter(value.values()))
    return out


def _count(attrs: Mapping[str, Any], keys: Sequence[str], ctx: Ctx) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is None:
            continue
        if isinstance(value, str) and value.isdigit():
            value = int(value)  # OTLP/JSON encodes int64 as a string
        return to_count(value, ctx, key)
    return None


def span_usage(attrs: Mapping[str, Any], ctx: Ctx) -> Usage | None:
    """Normalize a span's ``gen_ai.usage.*`` attributes; None when it has none."""
    inp = _count(attrs, _INPUT, ctx)
    out = _count(attrs, _OUTPUT, ctx)
    read = _count(attrs, _CACHE_READ, ctx)
    written = _count(attrs, _CACHE_WRITE, ctx)
    reasoning = _count(attrs, _REASONING, ctx)
    if inp is None and out is None and read is None and written is None:
        return None
    cached = (read or 0) + (written or 0)
    if inp is not None and cached > inp:
        ctx.warn("cache tokens exceed gen_ai.usage.input_tokens: read it as exclusive of cache")
    elif inp is not None:
        inp -= cached
    if reasoning is not None and out is not None and reasoning > out:
        ctx.warn("reasoning exceeds gen_ai.usage.output_tokens: read it as exclusive of reasoning")
        out += reasoning
    return make_usage(
        ctx,
        input_tokens=inp,
        cache_read_tokens=read,
        cache_write_tokens=written,
        output_tokens=out,
        reasoning_tokens=reasoning,
    )


def _spans(value: object, ctx: Ctx) -> Iterator[JsonObj]:
    obj = as_obj(value, ctx, "span")
    if "resourceSpans" in obj:
        for resource in get_list(obj, "resourceSpans", ctx):
            for scope in get_list(as_obj(resource, ctx, "resourceSpans[]"), "scopeSpans", ctx):
                for span in get_list(as_obj(scope, ctx, "scopeSpans[]"), "spans", ctx):
                    yield as_obj(span, ctx, "spans[]")
    else:
        yield obj


def _nanos(span: Mapping[str, Any], key: str) -> int | None:
    value = span.get(key)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _from_nanos(nanos: int, ctx: Ctx, name: str) -> datetime:
    try:
        at = _EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        raise ctx.error(f"timestamp out of range: {nanos}", field=name) from None
    return in_time_range(at, nanos, ctx, name)


def span_times(span: Mapping[str, Any], ctx: Ctx) -> tuple[datetime | None, datetime | None]:
    """The span's start and end times (None where missing)."""
    start, end = _nanos(span, "startTimeUnixNano"), _nanos(span, "endTimeUnixNano")
    return (
        None if not start else _from_nanos(start, ctx, "startTimeUnixNano"),
        None if not end else _from_nanos(end, ctx, "endTimeUnixNano"),
    )


def operation(attrs: Mapping[str, Any]) -> str | None:
    """The span's ``gen_ai.operation.name``, or None."""
    value = attrs.get("gen_ai.operation.name")
    return value if isinstance(value, str) else None


def span_call(span: Mapping[str, Any], attrs: Mapping[str, Any], ctx: Ctx) -> Call | None:
    """The model call a span records (see the module's rules), or None when it records none.
    Raises :class:`~llmledger.errors.ParseError` for usage that cannot be read (a negative
    count, a count that is not a number)."""
    op = operation(attrs)
    if op in RUN_OPERATIONS:
        return None
    usage = span_usage(attrs, ctx)
    if usage is None:
        if op not in MODEL_OPERATIONS:
            return None
        usage = Usage()
    return _call(span, usage, attrs, ctx)


def _call(span: Mapping[str, Any], usage: Usage, attrs: Mapping[str, Any], ctx: Ctx) -> Call:
    model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model")
    model = model if isinstance(model, str) else None
    system = attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system")
    provider = _PROVIDERS.get(system, system) if isinstance(system, str) else None
    response_id = attrs.get("gen_ai.response.id")
    response_id = response_id if isinstance(response_id, str) else None
    trace, span_id = span.get("traceId"), span.get("spanId")
    key = response_id or (f"{trace}:{span_id}" if trace and span_id else None)
    start, end = _nanos(span, "startTimeUnixNano"), _nanos(span, "endTimeUnixNano")
    conversation = attrs.get("gen_ai.conversation.id")
    call = Call(
        usage=usage,
        source=FORMAT,
        model=model,
        provider=provider or guess_provider(model),
        dedupe_key=key,
        message_id=response_id,
        session_id=conversation if isinstance(conversation, str) else None,
    )
    if start is not None and end is not None and end >= start:
        call.started_at = _from_nanos(start, ctx, "startTimeUnixNano")
        call.finished_at = _from_nanos(end, ctx, "endTimeUnixNano")
        call.duration_ms = (end - start) // 1_000_000
    status = span.get("status")
    if isinstance(status, dict) and status.get("code") in (2, "STATUS_CODE_ERROR", "ERROR"):
        call.status = "error"
    return call


def parse_spans(records: Sequence[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """One call per span that carries GenAI usage attributes."""
    calls = []
    for rec in records:
        ctx.line = rec.line
        for span in _spans(rec.value, ctx):
            attrs = attributes(span, ctx)
            if operation(attrs) in RUN_OPERATIONS:
                continue  # an agent's or workflow's summed usage: its calls are spans too
            usage = span_usage(attrs, ctx)
            if usage is not None:
                calls.append(_call(span, usage, attrs, ctx))
    if not calls:
        ctx.warn("no span carries gen_ai.usage attributes")
    return calls, None


__all__ = [
    "FORMAT",
    "MODEL_OPERATIONS",
    "RUN_OPERATIONS",
    "attributes",
    "operation",
    "parse_spans",
    "span_call",
    "span_times",
    "span_usage",
]
