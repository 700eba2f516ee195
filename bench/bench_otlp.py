"""The OTLP receiver's speed: spans and Claude Code events ingested per second.

Starts ``llmledger serve`` on a free loopback port for each store and POSTs raw OTLP protobuf
bodies built beforehand with ``opentelemetry-proto`` (what ``OTLPSpanExporter`` sends): traces
of one ``invoke_workflow`` span, one ``invoke_agent`` span and eight ``chat`` spans (8 calls and
2 runs per trace), 500 spans a request (the SDK's default batch size is 512), posted by a few
client threads; then ``claude_code.api_request`` log records, 500 a request. Prints figures
(and writes bench/results/otlp.json). Not a test: asserts nothing.

    .venv/bin/python bench/bench_otlp.py [--spans 20000] [--clients 2] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import PG_DEFAULT, pg_schema, serve

RESULTS = Path(__file__).with_name("results")
_PROTOBUF = {"Content-Type": "application/x-protobuf"}
_T0 = 1_795_256_100 * 1_000_000_000
_TRACE_SPANS = 10


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _trace_bodies(spans: int, per_request: int) -> list[bytes]:
    """Request bodies holding ``spans`` spans, whole traces of 10, ``per_request`` a body."""
    bodies = []
    traces_per_request = per_request // _TRACE_SPANS
    for _ in range(spans // per_request):
        request = ExportTraceServiceRequest()
        resource = request.resource_spans.add()
        resource.resource.attributes.append(_kv("service.name", "bench"))
        scope = resource.scope_spans.add()
        for _ in range(traces_per_request):
            trace_id = uuid.uuid4().bytes
            workflow, agent = os.urandom(8), os.urandom(8)
            for n in range(8):
                span = scope.spans.add(
                    trace_id=trace_id,
                    span_id=os.urandom(8),
                    parent_span_id=agent,
                    name="chat gpt-4o",
                    kind=3,
                    start_time_unix_nano=_T0 + n * 1_000_000_000,
                    end_time_unix_nano=_T0 + n * 1_000_000_000 + 900_000_000,
                )
                span.attributes.extend(
                    [
                        _kv("gen_ai.operation.name", "chat"),
                        _kv("gen_ai.provider.name", "openai"),
                        _kv("gen_ai.request.model", "gpt-4o"),
                        _kv("gen_ai.response.model", "gpt-4o-2024-08-06"),
                        _kv("gen_ai.usage.input_tokens", 2483),
                        _kv("gen_ai.usage.cache_read.input_tokens", 1920),
                        _kv("gen_ai.usage.output_tokens", 1036),
                    ]
                )
            for span_id, parent, op, name in (
                (agent, workflow, "invoke_agent", "invoke_agent coder"),
                (workflow, b"", "invoke_workflow", "invoke_workflow nightly"),
            ):
                span = scope.spans.add(
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_span_id=parent,
                    name=name,
                    start_time_unix_nano=_T0,
                    end_time_unix_nano=_T0 + 9_000_000_000,
                )
                span.attributes.extend(
                    [_kv("gen_ai.operation.name", op), _kv("gen_ai.agent.name", "coder")]
                )
        bodies.append(request.SerializeToString())
    return bodies


def _log_bodies(events: int, per_request: int) -> list[bytes]:
    """Request bodies of Claude Code ``api_request`` events (string attributes, as it sends)."""
    bodies = []
    for _ in range(events // per_request):
        request = ExportLogsServiceRequest()
        resource = request.resource_logs.add()
        resource.resource.attributes.append(_kv("service.name", "claude-code"))
        scope = resource.scope_logs.add()
        scope.scope.name = "com.anthropic.claude_code.events"
        session = str(uuid.uuid4())
        for n in range(per_request):
            record = scope.log_records.add(
                time_unix_nano=_T0 + n, body=AnyValue(string_value="claude_code.api_request")
            )
            record.attributes.extend(
                [
                    _kv("event.name", "api_request"),
                    _kv("event.timestamp", "2026-11-20T10:15:30.412Z"),
                    _kv("event.sequence", str(n)),
                    _kv("session.id", session),
                    _kv("user.email", "dev@example.com"),
                    _kv("model", "claude-sonnet-4-5-20250929"),
                    _kv("input_tokens", "12"),
                    _kv("output_tokens", "523"),
                    _kv("cache_read_tokens", "18432"),
                    _kv("cache_creation_tokens", "2048"),
                    _kv("cost_usd", "0.021337"),
                    _kv("duration_ms", "8412"),
                    _kv("request_id", f"req_{uuid.uuid4().hex}"),
                ]
            )
        bodies.append(request.SerializeToString())
    return bodies


def post(url: str, path: str, bodies: list[bytes], clients: int) -> float:
    """Seconds to POST every body, spread over ``clients`` threads."""
    shares = [bodies[i::clients] for i in range(clients)]
    errors: list[str] = []

    def post_all(mine: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for body in mine:
                response = client.post(path, content=body, headers=_PROTOBUF)
                if response.status_code != 200 or response.content:
                    errors.append(f"{response.status_code} {response.content[:200]!r}")

    threads = [threading.Thread(target=post_all, args=(mine,)) for mine in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return elapsed


def measure(db: str, spans: int, clients: int, rounds: int) -> dict[str, float]:
    """Median spans/s and events/s over ``rounds`` rounds on one server (new traces and
    sessions each round: nothing is a duplicate)."""
    span_rates, event_rates = [], []
    with serve(db) as url:
        for _ in range(rounds):
            bodies = _trace_bodies(spans, 500)
            span_rates.append(spans / post(url, "/v1/traces", bodies, clients))
            logs = _log_bodies(spans, 500)
            event_rates.append(spans / post(url, "/v1/logs", logs, clients))
    return {
        "spans_per_s": statistics.median(span_rates),
        "calls_per_s": statistics.median(span_rates) * 0.8,
        "claude_code_events_per_s": statistics.median(event_rates),
        "spans_per_s_rounds": [round(r) for r in span_rates],
        "events_per_s_rounds": [round(r) for r in event_rates],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20_000, help="spans (and events) a round")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("LLMLEDGER_BENCH_PG", PG_DEFAULT))
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0],
        "spans": args.spans,
        "clients": args.clients,
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench-otlp-"))
    try:
        results["sqlite"] = measure(
            f"sqlite:///{tmp / 'ledger.db'}", args.spans, args.clients, args.rounds
        )
        print("sqlite:", results["sqlite"])
        if not args.no_pg:
            with contextlib.ExitStack() as stack:
                db = stack.enter_context(pg_schema(args.pg, "bench_otlp"))
                results["postgresql"] = measure(db, args.spans, args.clients, args.rounds)
                print("postgresql:", results["postgresql"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "otlp.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
