"""OpenTelemetry export: every recorded call as a GenAI client span, the run tree as its
parent spans, and the ``gen_ai.client.token.usage`` histogram (``pip install
'llmledger[otel]'``).

Attach an :class:`OtelObserver` to a :class:`~llmledger.Ledger`::

    from llmledger import Ledger
    from llmledger.otel import OtelObserver

    ledger = Ledger(observers=[OtelObserver()])  # the global tracer and meter providers

The names follow the OpenTelemetry GenAI semantic conventions (Development status) as kept in
the ``open-telemetry/semantic-conventions-genai`` repository (they left
``open-telemetry/semantic-conventions`` after its v1.42.0 release; see
``docs/observability.md`` for the version followed and the names that differ).

Token counts: the ledger keeps non-overlapping buckets (``input_tokens`` excludes cache reads
and writes); OpenTelemetry's ``gen_ai.usage.input_tokens`` includes them. The span therefore
carries ``input + cache_read + cache_write``, and only when the uncached input is known: a
count that was not reported is left out, never sent as 0.

This module is the only one that imports ``opentelemetry``; ``import llmledger`` does not.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from llmledger import __version__

if TYPE_CHECKING:
    from llmledger.call import Call
    from llmledger.ledger import Run
    from llmledger.pricing import Price
    from llmledger.store.schema import TerminalRunStatus
    from llmledger.totals import Totals
    from llmledger.usage import Usage

__all__ = [
    "AGENT_KINDS",
    "CONVENTIONS",
    "TOKEN_BUCKETS",
    "WORKFLOW_KINDS",
    "OtelObserver",
    "input_tokens_otel",
    "provider_name",
]

#: The conventions followed, as written in the docs and in each span's instrumentation scope.
CONVENTIONS = "OpenTelemetry GenAI semantic conventions (semantic-conventions-genai, Development)"
#: Run kinds exported as ``invoke_workflow`` spans.
WORKFLOW_KINDS = frozenset({"workflow", "plan"})
#: Run kinds exported as ``invoke_agent`` spans.
AGENT_KINDS = frozenset({"agent", "subagent"})
#: The bucket boundaries the conventions advise for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)

# The ledger's provider names -> the conventions' well-known values of gen_ai.provider.name.
_PROVIDERS = {
    "google": "gcp.gen_ai",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "bedrock": "aws.bedrock",
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "moonshot": "moonshot_ai",
    "ibm": "ibm.watsonx.ai",
}
# Run statuses that end a run's span with status ERROR (cancelled and skipped are not errors).
_ERROR_STATUSES = frozenset({"failed", "timed_out", "interrupted"})


def provider_name(provider: str | None) -> str | None:
    """The ``gen_ai.provider.name`` for a ledger provider name: the conventions' well-known
    value where one applies (``google`` -> ``gcp.gen_ai``, ``xai`` -> ``x_ai``), else the
    name as the ledger has it; None when the provider is not known."""
    if not provider:
        return None
    return _PROVIDERS.get(provider.lower(), provider.lower())


def input_tokens_otel(usage: Usage) -> int | None:
    """``gen_ai.usage.input_tokens`` as OpenTelemetry counts it: uncached input plus cache
    reads plus cache writes. None when the uncached input is unknown (a partial sum is not the
    total); an unreported cache bucket adds nothing (the provider reported no caching)."""
    if usage.input_tokens is None:
        return None
    return usage.input_tokens + (usage.cache_read_tokens or 0) + (usage.cache_write_tokens or 0)


def _operation(call: Call) -> str:
    """``gen_ai.operation.name`` for a call, from the source that parsed it."""
    source = call.source.lower()
    if "generate_content" in source:
        return "generate_content"
    if "embedding" in source:
        return "embeddings"
    return "chat"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(at: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (no float on the way)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _call_times(call: Call, now: int) -> tuple[int, int]:
    """The call's (start, end) in nanoseconds, from what it records: started_at, finished_at,
    duration_ms; what is missing is taken as ``now`` (the time it was recorded)."""
    duration = call.duration_ms * 1_000_000 if call.duration_ms is not None else None
    start = _ns(call.started_at) if call.started_at is not None else None
    end = _ns(call.finished_at) if call.finished_at is not None else None
    if start is None and end is None:
        end = now
    if start is None:
        assert end is not None
        start = end - duration if duration is not None else end
    if end is None:
        end = start + duration if duration is not None else start
    return start, max(start, end)


def _put(attributes: dict[str, Any], name: str, value: Any) -> None:
    """Set ``name`` unless the value is unknown (None): unknown stays absent."""
    if value is not None:
        attributes[name] = value


class OtelObserver:
    """A ledger observer that exports to OpenTelemetry.

    Every call recorded becomes a span of kind CLIENT named ``{operation} {model}`` with the
    GenAI attributes (operation, provider, model, token usage, response id, conversation id)
    and llmledger's own (``llmledger.cost_usd``, ``llmledger.cost_status``, the 5m/1h cache
    write split, the run id and kind, the source). Each run becomes a span, started when the
    run opens and ended when it finishes: ``invoke_workflow {name}`` for workflow and plan
    runs, ``invoke_agent {agent}`` for agent runs and where a run names an agent its parent
    does not, else ``{kind} {name}``; its calls and child runs are its children. A run's span
    has the current OpenTelemetry span (the application's own) as its parent.

    Each call with known counts also records ``gen_ai.client.token.usage`` (a histogram,
    ``gen_ai.token.type`` ``input`` or ``output``).

    ``tracer_provider`` and ``meter_provider`` default to the global ones. Like every
    observer, it never raises into ``record()``: the ledger guards each call to it.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer("llmledger", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("llmledger", __version__, meter_provider=meter_provider)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self._lock = threading.Lock()
        self._spans: dict[str, trace.Span] = {}

    # -- the observer protocol -----------------------------------------------------------

    def on_run_start(self, run: Run) -> None:
        """Start the run's span (a child of its parent run's span)."""
        self._run_span(run)

    def on_record(self, call: Call, price: Price, run: Run | None) -> None:
        """Export ``call`` as a GenAI client span under its run, and count its tokens."""
        operation = _operation(call)
        provider = provider_name(call.provider)
        attributes = self._call_attributes(call, price, run, operation, provider)
        parent = self._run_span(run) if run is not None else None
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        start, end = _call_times(call, time.time_ns())
        name = f"{operation} {call.model}" if call.model else operation
        span = self._tracer.start_span(
            name, context=ctx, kind=SpanKind.CLIENT, attributes=attributes, start_time=start
        )
        if call.status == "error":
            span.set_attribute("error.type", "_OTHER")
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)
        self._count_tokens(call, operation, provider)

    def on_finalize(self, run: Run, status: TerminalRunStatus, totals: Totals | None) -> None:
        """End the run's span with its status (ERROR for failed, timed_out, interrupted)."""
        span = self._run_span(run)
        with self._lock:
            self._spans.pop(run.id, None)
        span.set_attribute("llmledger.run_status", status)
        if totals is not None:
            _put_span(span, "llmledger.subtree.cost_usd", _float(totals.cost_usd))
            span.set_attribute("llmledger.subtree.calls", totals.calls)
            span.set_attribute("llmledger.subtree.unpriced_calls", totals.unpriced_calls)
        if status in _ERROR_STATUSES:
            span.set_attribute("error.type", status)
            span.set_status(Status(StatusCode.ERROR, f"run {status}"))
        span.end()

    def on_failure(self, error: BaseException, what: str) -> None:
        """Nothing: failures are the ledger's to log and count (``ledger.failures``)."""

    # -- spans ---------------------------------------------------------------------------

    def _run_span(self, run: Run) -> trace.Span:
        """The open span of ``run``, started now (with its ancestors') if it has none yet: a
        run opened before this observer was attached still gets one."""
        with self._lock:
            span = self._spans.get(run.id)
        if span is not None:
            return span
        # An ended parent's span is not restarted (it would never end): the run hangs where
        # the application's current span is.
        live_parent = (
            run.parent if run.parent is not None and run.parent.status == "running" else None
        )
        parent = self._run_span(live_parent) if live_parent is not None else None
        ctx = (
            trace.set_span_in_context(parent) if parent is not None else otel_context.get_current()
        )
        name, attributes = _run_shape(run)
        span = self._tracer.start_span(
            name, context=ctx, kind=SpanKind.INTERNAL, attributes=attributes
        )
        with self._lock:
            existing = self._spans.setdefault(run.id, span)
        if existing is not span:  # another thread started it first
            span.end()
        return existing

    def _call_attributes(
        self, call: Call, price: Price, run: Run | None, operation: str, provider: str | None
    ) -> dict[str, Any]:
        usage = call.usage
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        _put(attributes, "gen_ai.provider.name", provider)
        _put(attributes, "gen_ai.request.model", call.model)
        _put(attributes, "gen_ai.response.model", call.model)
        _put(attributes, "gen_ai.response.id", call.message_id)
        _put(attributes, "gen_ai.conversation.id", call.session_id)
        _put(attributes, "gen_ai.usage.input_tokens", input_tokens_otel(usage))
        _put(attributes, "gen_ai.usage.output_tokens", usage.output_tokens)
        _put(attributes, "gen_ai.usage.cache_read.input_tokens", usage.cache_read_tokens)
        _put(attributes, "gen_ai.usage.cache_creation.input_tokens", usage.cache_write_tokens)
        _put(attributes, "gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens)
        _put(attributes, "llmledger.uncached_input_tokens", usage.input_tokens)
        _put(attributes, "llmledger.cache_write_5m_tokens", usage.cache_write_5m_tokens)
        _put(attributes, "llmledger.cache_write_1h_tokens", usage.cache_write_1h_tokens)
        _put(attributes, "llmledger.cost_usd", _float(price.cost_usd))
        attributes["llmledger.cost_status"] = price.cost_status
        _put(attributes, "llmledger.price_version", price.price_version)
        attributes["llmledger.source"] = call.source
        attributes["llmledger.token_provenance"] = call.token_provenance
        _put(attributes, "llmledger.agent", call.agent_id)
        _put(attributes, "llmledger.call_key", call.dedupe_key)
        if run is not None:
            attributes["llmledger.run_id"] = run.id
            attributes["llmledger.run_kind"] = run.kind
        return attributes

    def _count_tokens(self, call: Call, operation: str, provider: str | None) -> None:
        base: dict[str, Any] = {"gen_ai.operation.name": operation}
        _put(base, "gen_ai.provider.name", provider)
        _put(base, "gen_ai.request.model", call.model)
        _put(base, "gen_ai.response.model", call.model)
        counts = {"input": input_tokens_otel(call.usage), "output": call.usage.output_tokens}
        for token_type, count in counts.items():
            if count is not None:
                self._tokens.record(count, {**base, "gen_ai.token.type": token_type})


def _run_shape(run: Run) -> tuple[str, dict[str, Any]]:
    """(span name, attributes) of a run's span."""
    attributes: dict[str, Any] = {"llmledger.run_id": run.id, "llmledger.run_kind": run.kind}
    _put(attributes, "llmledger.run_name", run.name)
    _put(attributes, "llmledger.run_key", run.key)
    _put(attributes, "llmledger.attempt", run.attempt_number)
    _put(attributes, "llmledger.agent", run.agent)
    label = run.name or run.key
    parent_agent = run.parent.agent if run.parent is not None else None
    operation: str | None = None
    if run.kind in WORKFLOW_KINDS:
        operation = "invoke_workflow"
        _put(attributes, "gen_ai.workflow.name", label)
        name = f"invoke_workflow {label}" if label else "invoke_workflow"
    elif run.kind in AGENT_KINDS or (run.agent is not None and run.agent != parent_agent):
        operation = "invoke_agent"
        agent = run.agent or run.name
        _put(attributes, "gen_ai.agent.name", agent)
        name = f"invoke_agent {agent}" if agent else "invoke_agent"
    else:
        name = f"{run.kind} {label}" if label else run.kind
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    return name, attributes


def _float(amount: Any) -> float | None:
    """A USD amount as the float an attribute holds (OpenTelemetry has no decimal type)."""
    return None if amount is None else float(amount)


def _put_span(span: trace.Span, name: str, value: Any) -> None:
    if value is not None:
        span.set_attribute(name, value)
