"""OpenTelemetry out (issue 16): what llmledger.otel.OtelObserver exports through the real SDK,
read back with its in-memory span exporter and metric reader."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmledger import Call, Ledger, Usage
from llmledger.otel import OtelObserver
from llmledger.pricing import NO_OVERRIDES, Pricer

OPENAI_CHAT = {
    "id": "chatcmpl-otel-1",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 2000,  # includes the 1500 cached ones
        "completion_tokens": 300,
        "total_tokens": 2300,
        "prompt_tokens_details": {"cached_tokens": 1500},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

ANTHROPIC_MESSAGE = {
    "id": "msg_otel_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "usage": {
        "input_tokens": 100,  # excludes cache reads and writes
        "cache_read_input_tokens": 4000,
        "cache_creation_input_tokens": 700,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 500},
        "output_tokens": 50,
    },
}


@dataclass
class Otel:
    """A ledger with an OtelObserver wired to in-memory SDK readers."""

    ledger: Ledger
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [span for span in self.finished() if span.name == name]
        assert len(found) == 1, [span.name for span in self.finished()]
        return found[0]

    def token_points(self) -> list[HistogramDataPoint]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        points: list[HistogramDataPoint] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "gen_ai.client.token.usage":
                        assert metric.unit == "{token}"
                        points += [
                            p for p in metric.data.data_points if isinstance(p, HistogramDataPoint)
                        ]
        return points


@pytest.fixture
def otel(sqlite_url: str) -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    observer = OtelObserver(tracer_provider=tracer_provider, meter_provider=meter_provider)
    ledger = Ledger(sqlite_url, pricer=Pricer(NO_OVERRIDES), observers=[observer])
    try:
        yield Otel(ledger, exporter, reader)
    finally:
        ledger.close()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_openai_chat_with_cached_tokens(otel: Otel) -> None:
    # OpenAI's prompt_tokens already includes the cached tokens: OTel's input_tokens is 2000,
    # not 2000 + 1500.
    started = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    otel.ledger.record(OPENAI_CHAT, started_at=started, duration_ms=1250)
    span = otel.span("chat gpt-4o-2024-08-06")
    attrs = _attrs(span)
    assert span.kind is SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.id"] == "chatcmpl-otel-1"
    assert attrs["gen_ai.usage.input_tokens"] == 2000
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1500
    assert attrs["gen_ai.usage.output_tokens"] == 300
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 0
    assert attrs["llmledger.uncached_input_tokens"] == 500
    assert attrs["llmledger.source"] == "openai_chat_completions"
    assert attrs["llmledger.cost_status"] == "computed"
    # gpt-4o: 500 x $2.50/M + 1500 x $1.25/M + 300 x $10/M
    assert attrs["llmledger.cost_usd"] == pytest.approx(0.00125 + 0.001875 + 0.003)
    assert "llmledger.run_id" not in attrs  # recorded outside any run
    # The call's own times, not the time it was recorded.
    assert span.start_time == 1_767_268_800 * 10**9
    assert span.end_time == 1_767_268_801_250 * 10**6
    assert span.status.status_code is StatusCode.UNSET

    points = {p.attributes["gen_ai.token.type"]: p for p in otel.token_points()}
    assert set(points) == {"input", "output"}
    assert (points["input"].count, points["input"].sum) == (1, 2000)
    assert (points["output"].count, points["output"].sum) == (1, 300)
    assert points["input"].attributes["gen_ai.provider.name"] == "openai"
    assert points["input"].attributes["gen_ai.operation.name"] == "chat"


def test_anthropic_message_with_cache_reads_and_writes(otel: Otel) -> None:
    # Anthropic's input_tokens excludes cache reads and writes: OTel's includes them.
    otel.ledger.record(ANTHROPIC_MESSAGE, cost_usd="0.0123")
    attrs = _attrs(otel.span("chat claude-sonnet-4-20250514"))
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.usage.input_tokens"] == 100 + 4000 + 700
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 4000
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 700
    assert attrs["llmledger.cache_write_5m_tokens"] == 200
    assert attrs["llmledger.cache_write_1h_tokens"] == 500
    assert attrs["gen_ai.usage.output_tokens"] == 50
    assert "gen_ai.usage.reasoning.output_tokens" not in attrs  # not reported
    assert attrs["llmledger.cost_status"] == "reported"
    assert attrs["llmledger.cost_usd"] == pytest.approx(0.0123)
    sums = {p.attributes["gen_ai.token.type"]: p.sum for p in otel.token_points()}
    assert sums == {"input": 4800, "output": 50}


def test_unknown_buckets_stay_absent(otel: Otel) -> None:
    # Only cache reads and output known: the total input is unknown, not 0 and not 40.
    otel.ledger.record(
        Usage(cache_read_tokens=40, output_tokens=7), model="mystery-model", provider=None
    )
    span = otel.span("chat mystery-model")
    attrs = _attrs(span)
    assert "gen_ai.usage.input_tokens" not in attrs
    assert "gen_ai.usage.cache_creation.input_tokens" not in attrs
    assert "gen_ai.usage.reasoning.output_tokens" not in attrs
    assert "gen_ai.provider.name" not in attrs
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 40
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["llmledger.cost_status"] == "unpriced"
    assert "llmledger.cost_usd" not in attrs  # unpriced is not free
    points = otel.token_points()
    assert [p.attributes["gen_ai.token.type"] for p in points] == ["output"]

    # Nothing known at all: a span without a single usage attribute, no histogram point.
    otel.ledger.record(Call(usage=Usage(), source="api"))
    bare = _attrs(otel.span("chat"))
    assert not [name for name in bare if name.startswith("gen_ai.usage.")]
    assert sum(p.count for p in otel.token_points()) == 1


def test_run_tree_is_the_parent_chain(otel: Otel) -> None:
    ledger = otel.ledger
    with (
        ledger.run("workflow", "release") as workflow,
        ledger.run("task", "Fix off-by-one", key="1.1") as task,
        task.attempt() as attempt,
    ):
        opened = time.time_ns()
        # Open spans are not exported before their run ends.
        assert otel.finished() == []
        ledger.record(OPENAI_CHAT)
    call = otel.span("chat gpt-4o-2024-08-06")
    attempt_span = otel.span("attempt Fix off-by-one attempt 1")
    task_span = otel.span("task Fix off-by-one")
    workflow_span = otel.span("invoke_workflow release")
    assert call.parent is not None
    assert attempt_span.parent is not None
    assert task_span.parent is not None
    assert call.parent.span_id == attempt_span.context.span_id
    assert attempt_span.parent.span_id == task_span.context.span_id
    assert task_span.parent.span_id == workflow_span.context.span_id
    assert workflow_span.parent is None
    assert len({s.context.trace_id for s in otel.finished()}) == 1

    assert _attrs(call)["llmledger.run_id"] == attempt.id
    assert _attrs(call)["llmledger.run_kind"] == "attempt"
    workflow_attrs = _attrs(workflow_span)
    assert workflow_attrs["gen_ai.operation.name"] == "invoke_workflow"
    assert workflow_attrs["gen_ai.workflow.name"] == "release"
    assert workflow_attrs["llmledger.run_id"] == workflow.id
    assert workflow_attrs["llmledger.run_status"] == "succeeded"
    assert workflow_attrs["llmledger.subtree.calls"] == 1
    task_attrs = _attrs(task_span)
    assert "gen_ai.operation.name" not in task_attrs  # a plain internal span
    assert task_attrs["llmledger.run_kind"] == "task"
    assert task_attrs["llmledger.run_key"] == "1.1"
    assert _attrs(attempt_span)["llmledger.attempt"] == 1
    assert all(s.kind is SpanKind.INTERNAL for s in (workflow_span, task_span, attempt_span))
    # A run's span lasts from its opening (not its first call) to its end, around its calls.
    assert attempt_span.start_time is not None
    assert attempt_span.start_time <= opened
    assert workflow_span.start_time is not None
    assert task_span.start_time is not None
    assert workflow_span.start_time <= task_span.start_time
    assert workflow_span.end_time is not None
    assert task_span.end_time is not None
    assert task_span.end_time <= workflow_span.end_time


def test_agent_runs_are_invoke_agent_spans(otel: Otel) -> None:
    with otel.ledger.run("session", "s"), otel.ledger.run("task", "t", agent="reviewer") as task:
        with otel.ledger.run("step", "inner"):
            pass
        assert task.agent == "reviewer"
    agent_span = otel.span("invoke_agent reviewer")
    attrs = _attrs(agent_span)
    assert attrs["gen_ai.operation.name"] == "invoke_agent"
    assert attrs["gen_ai.agent.name"] == "reviewer"
    assert attrs["llmledger.run_kind"] == "task"
    # The child inherits the agent: it is not a second agent invocation.
    assert "gen_ai.operation.name" not in _attrs(otel.span("step inner"))
    assert "gen_ai.operation.name" not in _attrs(otel.span("session s"))


def test_a_run_under_an_ended_parent_does_not_restart_its_span(otel: Otel) -> None:
    with otel.ledger.run("task", "first") as first:
        pass
    with otel.ledger.run("attempt", "late", parent=first):
        pass
    names = sorted(span.name for span in otel.finished())
    assert names == ["attempt late", "task first"]  # each exported once, every one ended
    assert otel.span("attempt late").parent is None


def test_failed_run_and_failed_call_have_error_status(otel: Otel) -> None:
    def doomed() -> None:
        with otel.ledger.run("task", "doomed"):
            otel.ledger.record(ANTHROPIC_MESSAGE, status="error")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        doomed()
    run_span = otel.span("task doomed")
    assert run_span.status.status_code is StatusCode.ERROR
    assert _attrs(run_span)["llmledger.run_status"] == "failed"
    assert _attrs(run_span)["error.type"] == "failed"
    call_span = otel.span("chat claude-sonnet-4-20250514")
    assert call_span.status.status_code is StatusCode.ERROR
    assert _attrs(call_span)["error.type"] == "_OTHER"

    with otel.ledger.run("task", "fine"):
        pass
    assert otel.span("task fine").status.status_code is StatusCode.UNSET


def test_observer_never_raises_into_record(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    observer = otel.ledger.observers[0]
    assert isinstance(observer, OtelObserver)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter down")

    monkeypatch.setattr(observer, "_tracer", type("T", (), {"start_span": broken})())
    with otel.ledger.run("task", "still works") as run:
        calls = otel.ledger.record(OPENAI_CHAT)
    assert len(calls) == 1  # recorded and stored anyway
    assert run.totals().calls == 1
    assert otel.ledger.failures >= 2  # the run's span and the call's span, each logged


def test_observer_without_on_run_start_still_works(sqlite_url: str) -> None:
    seen: list[str] = []

    class Old:
        def on_record(self, call: Call, price: object, run: object) -> None:
            seen.append("record")

        def on_finalize(self, run: object, status: str, totals: object) -> None:
            seen.append(status)

        def on_failure(self, error: BaseException, what: str) -> None:
            seen.append("failure")

    with Ledger(sqlite_url, pricer=Pricer(NO_OVERRIDES), observers=[Old()]) as ledger:  # type: ignore[list-item]
        with ledger.run("task", "t"):
            ledger.record(Usage(input_tokens=1, output_tokens=1), model="gpt-4o")
        assert ledger.failures == 0
    assert seen == ["record", "succeeded"]


def test_cost_is_decimal_exact_in_the_ledger_and_float_in_otel(otel: Otel) -> None:
    calls = otel.ledger.record(ANTHROPIC_MESSAGE, cost_usd=Decimal("0.000000000001"))
    assert calls[0].reported_cost_usd == Decimal("0.000000000001")
    assert _attrs(otel.span("chat claude-sonnet-4-20250514"))["llmledger.cost_usd"] == 1e-12


def test_import_llmledger_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, llmledger; from llmledger import Ledger, Usage; "
        "import llmledger.ledger; "
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
