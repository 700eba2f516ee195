"""OpenTelemetry in (issue 16): ``llmledger serve`` takes OTLP/HTTP at ``/v1/traces`` and
``/v1/logs``. GenAI spans sent by the real OTLP exporter become calls under the run tree of
their parent spans; Claude Code's ``api_request`` log events become calls with their reported
cost; everything sent twice changes nothing; a call never counts twice with
``llmledger import`` of the same session's transcript."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context
from sqlalchemy import select

from llmledger.api import create_app
from llmledger.api.otlp_ingest import span_run_id
from llmledger.call import Call
from llmledger.imports import import_logs
from llmledger.imports.rows import session_run_id
from llmledger.sources import otlp
from llmledger.store import Repository, open_repository
from llmledger.store.schema import calls, runs
from llmledger.usage import Usage
from server import ServerProcess

OTLP = Path(__file__).resolve().parent / "fixtures" / "otlp"
SESSION = "7d1e3c0a-5b1f-4b8e-9a61-2c4f0d9e1a77"
REQ_A = "req_011CVxA1pQfM7dLz2wTn8bYe"
REQ_B = "req_011CVxB2kR4sJ9hN1vXc5aZo"
_NS = 1_000_000_000
_T0 = 1_795_256_100 * _NS


# -- spans from the real SDK ---------------------------------------------------------------


def _genai_spans(*, bad: bool = False) -> list[ReadableSpan]:
    """A workflow running an agent that chats and calls a tool (which chats too), a failed
    chat under the workflow, and an embeddings call outside any span; with ``bad``, one more
    chat span whose input count is negative."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "triage-bot", "host.name": "build-7"})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test.genai")
    t = _T0

    def at(seconds: float) -> int:
        return t + int(seconds * _NS)

    workflow = tracer.start_span(
        "invoke_workflow triage",
        start_time=at(0),
        attributes={"gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": "triage"},
    )
    wf_ctx = set_span_in_context(workflow)
    agent = tracer.start_span(
        "invoke_agent classifier",
        context=wf_ctx,
        start_time=at(0.1),
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "classifier",
            # The agent's summed usage: never a call of its own.
            "gen_ai.usage.input_tokens": 8000,
            "gen_ai.usage.output_tokens": 520,
        },
    )
    agent_ctx = set_span_in_context(agent)
    chat = tracer.start_span(
        "chat gpt-4o",
        context=agent_ctx,
        kind=SpanKind.CLIENT,
        start_time=at(0.2),
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 3000,
            "gen_ai.usage.cache_read.input_tokens": 1024,
            "gen_ai.usage.output_tokens": 400,
        },
    )
    chat.end(end_time=at(3.2))
    tool = tracer.start_span(
        "execute_tool lookup",
        context=agent_ctx,
        start_time=at(3.3),
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
    )
    inner = tracer.start_span(
        "chat claude-sonnet-4-5",
        context=set_span_in_context(tool),
        kind=SpanKind.CLIENT,
        start_time=at(3.4),
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.response.model": "claude-sonnet-4-5-20250929",
            "gen_ai.response.id": "msg_01OtelInnerCall",
            # Current semconv: input includes cache reads and writes.
            "gen_ai.usage.input_tokens": 5000,
            "gen_ai.usage.cache_read.input_tokens": 4000,
            "gen_ai.usage.cache_creation.input_tokens": 500,
            "gen_ai.usage.output_tokens": 120,
        },
    )
    inner.end(end_time=at(6.0))
    tool.end(end_time=at(6.1))
    agent.end(end_time=at(7.0))
    failed = tracer.start_span(
        "chat gpt-4o-mini",
        context=wf_ctx,
        kind=SpanKind.CLIENT,
        start_time=at(7.1),
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 0,
        },
    )
    failed.set_status(StatusCode.ERROR, "rate limited")
    failed.end(end_time=at(7.5))
    if bad:
        negative = tracer.start_span(
            "chat broken",
            context=wf_ctx,
            start_time=at(7.6),
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": -5,
                "gen_ai.usage.output_tokens": 10,
            },
        )
        negative.end(end_time=at(7.7))
    workflow.end(end_time=at(9.0))
    embed = tracer.start_span(
        "embeddings text-embedding-3-small",
        kind=SpanKind.CLIENT,
        start_time=at(9.5),
        attributes={
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 64,
        },
    )
    embed.end(end_time=at(9.6))
    provider.shutdown()
    return list(memory.get_finished_spans())


def _export(url: str, spans: list[ReadableSpan], *, gzipped: bool = False) -> None:
    compression = Compression.Gzip if gzipped else Compression.NoCompression
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=30, compression=compression)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()


def _dump(repo: Repository) -> dict[str, list[tuple[Any, ...]]]:
    """The ledger's runs and calls, less what differs between two writes of the same things
    (when a call was recorded)."""
    return {
        "runs": repo.fetch(
            "SELECT id, parent_id, root_id, kind, name, status, agent_id, started_at,"
            " finished_at, duration_ms, metadata, input_tokens, cache_read_tokens,"
            " cache_write_tokens, output_tokens, cost_usd, call_count FROM runs ORDER BY id"
        ),
        "calls": repo.fetch(
            "SELECT dedupe_key, run_id, source, provider, model, message_id, session_id,"
            " agent_id, host, started_at, finished_at, duration_ms, input_tokens,"
            " cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,"
            " cost_usd, cost_status, status, metadata FROM calls ORDER BY dedupe_key"
        ),
    }


def _calls_rows(repo: Repository) -> list[dict[str, Any]]:
    with repo.engine.connect() as conn:
        return [dict(row) for row in conn.execute(select(calls)).mappings()]


def _calls(repo: Repository) -> dict[str, dict[str, Any]]:
    return {str(row["model"]): row for row in _calls_rows(repo)}


def _runs(repo: Repository) -> dict[str, dict[str, Any]]:
    with repo.engine.connect() as conn:
        return {str(row["id"]): dict(row) for row in conn.execute(select(runs)).mappings()}


def _ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def _run_of(spans: list[ReadableSpan], name: str) -> str:
    span = next(s for s in spans if s.name == name)
    return span_run_id(*_ids(span))


@pytest.fixture
def server(sqlite_url: str) -> Iterator[ServerProcess]:
    with ServerProcess(sqlite_url) as running:
        yield running


def test_real_exporter_spans_become_calls_and_runs(server: ServerProcess, sqlite_url: str) -> None:
    spans = _genai_spans()
    _export(server.url, spans)
    repo = open_repository(sqlite_url)
    calls = _calls(repo)
    assert sorted(calls) == [
        "claude-sonnet-4-5-20250929",
        "gpt-4o-2024-08-06",
        "gpt-4o-mini",
        "text-embedding-3-small",
    ]
    chat = calls["gpt-4o-2024-08-06"]
    # 3000 prompt tokens of which 1024 read from the cache: 1976 uncached.
    assert (chat["input_tokens"], chat["cache_read_tokens"], chat["output_tokens"]) == (
        1976,
        1024,
        400,
    )
    assert chat["cache_write_tokens"] is None
    # gpt-4o: $2.50/M input, $1.25/M cache reads, $10/M output.
    assert (chat["cost_usd"], chat["cost_status"]) == (Decimal("0.01022"), "computed")
    assert chat["agent_id"] == "classifier"
    assert chat["host"] == "build-7"
    inner = calls["claude-sonnet-4-5-20250929"]
    assert (
        inner["input_tokens"],
        inner["cache_read_tokens"],
        inner["cache_write_tokens"],
        inner["output_tokens"],
    ) == (500, 4000, 500, 120)
    assert inner["dedupe_key"] == "msg_01OtelInnerCall"
    # claude-sonnet-4-5: $3/M input, $0.30/M cache reads, $3.75/M cache writes, $15/M output.
    assert inner["cost_usd"] == Decimal("0.006375")
    assert calls["gpt-4o-mini"]["status"] == "error"
    assert calls["text-embedding-3-small"]["run_id"] is None
    # The agent's summed usage attributes are not a call: 4 calls, not 5.
    assert len(calls) == 4

    runs = _runs(repo)
    workflow = _run_of(spans, "invoke_workflow triage")
    agent = _run_of(spans, "invoke_agent classifier")
    tool = _run_of(spans, "execute_tool lookup")
    assert set(runs) == {workflow, agent, tool}
    assert runs[workflow]["kind"] == "workflow"
    assert runs[workflow]["parent_id"] is None
    assert (runs[agent]["kind"], runs[agent]["parent_id"]) == ("agent", workflow)
    assert runs[agent]["agent_id"] == "classifier"
    assert (runs[tool]["kind"], runs[tool]["parent_id"]) == ("tool", agent)
    assert {r["root_id"] for r in runs.values()} == {workflow}
    assert {r["status"] for r in runs.values()} == {"succeeded"}
    assert runs[workflow]["duration_ms"] == 9000
    assert chat["run_id"] == agent
    assert inner["run_id"] == tool
    assert calls["gpt-4o-mini"]["run_id"] == workflow
    # The workflow's inclusive roll-up holds its three calls.
    assert runs[workflow]["call_count"] == 3
    assert runs[workflow]["input_tokens"] == 1976 + 500 + 100


def test_parents_sent_after_children_make_the_same_tree(tmp_path: Path) -> None:
    spans = _genai_spans()
    parents = {"invoke_workflow triage", "invoke_agent classifier"}
    together, apart = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'two.db'}"
    with ServerProcess(together) as one:
        _export(one.url, spans)
    with ServerProcess(apart) as two:
        _export(two.url, [s for s in spans if s.name not in parents])
        halfway = _runs(open_repository(apart))
        # The calls wait under placeholders of their parents, which are still running.
        agent = _run_of(spans, "invoke_agent classifier")
        assert halfway[agent]["status"] == "running"
        assert halfway[agent]["metadata"]["otel"]["placeholder"] is True
        _export(two.url, [s for s in spans if s.name in parents])
    assert _dump(open_repository(apart)) == _dump(open_repository(together))


def test_everything_sent_twice_changes_nothing(db_url: str) -> None:
    spans = _genai_spans()
    logs = (OTLP / "claude-code-logs.json").read_bytes()
    with ServerProcess(db_url) as running:
        _export(running.url, spans)
        _post(running.url, "/v1/logs", logs)
        repo = open_repository(db_url)
        first = _dump(repo)
        _export(running.url, spans, gzipped=True)
        _export(running.url, list(reversed(spans)))
        again = _post(running.url, "/v1/logs", logs)
        assert again.json() == {}
        assert _dump(repo) == first
        repo.engine.dispose()
    assert len(first["calls"]) == 6


def _post(
    url: str, path: str, body: bytes, content_type: str = otlp.JSON, *, gzipped: bool = False
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if gzipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    response = httpx.post(url + path, content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


# -- in process: the protocol's corners ----------------------------------------------------


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_url, no_auth=True)) as test_client:
        yield test_client


def test_a_bad_span_is_rejected_in_partial_success_and_the_others_go_in(
    client: TestClient, sqlite_url: str
) -> None:
    body = encode_spans(_genai_spans(bad=True)).SerializeToString()
    response = client.post("/v1/traces", content=body, headers={"Content-Type": otlp.PROTOBUF})
    assert response.status_code == 200
    assert response.headers["content-type"] == otlp.PROTOBUF
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "chat broken" in answer.partial_success.error_message
    assert "must not be negative" in answer.partial_success.error_message
    assert len(_calls(open_repository(sqlite_url))) == 4


def test_otlp_json_traces_gzip_too(client: TestClient, sqlite_url: str) -> None:
    body = (OTLP / "genai-traces.json").read_bytes()
    response = client.post(
        "/v1/traces",
        content=gzip.compress(body),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json() == {}
    repo = open_repository(sqlite_url)
    calls = sorted(_calls_rows(repo), key=lambda row: row["dedupe_key"])
    assert [(c["input_tokens"], c["cache_read_tokens"], c["output_tokens"]) for c in calls] == [
        (1976, 1024, 400),
        (2000, None, 500),
    ]
    # gpt-4o: $2.50/M input, $1.25/M cache reads, $10/M output.
    assert calls[0]["cost_usd"] == Decimal("0.01022")
    runs = _runs(repo)
    workflow = span_run_id("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174")
    agent = span_run_id("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b173")
    # The HTTP span under the workflow holds no GenAI span: not a run.
    assert set(runs) == {workflow, agent}
    assert {c["run_id"] for c in calls} == {agent}
    assert runs[workflow]["name"] == "invoke_workflow triage"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "text/plain"}, b"{}", 415),
        ({"Content-Type": otlp.JSON, "Content-Encoding": "br"}, b"{}", 415),
        ({"Content-Type": otlp.JSON}, b"{not json", 400),
        ({"Content-Type": otlp.JSON}, b'{"resourceSpans": 3, "resourceLogs": 3}', 400),
        ({"Content-Type": otlp.PROTOBUF}, b"\xff\xff\xff\xff", 400),
        ({"Content-Type": otlp.JSON, "Content-Encoding": "gzip"}, b"not gzip", 400),
    ],
)
def test_undecodable_bodies_and_other_media_types(
    client: TestClient, headers: dict[str, str], body: bytes, status: int
) -> None:
    for path in ("/v1/traces", "/v1/logs"):
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.json()["message"]


def test_the_ingest_keys_guard_the_receiver(sqlite_url: str) -> None:
    from llmledger import keys

    repo = open_repository(sqlite_url)
    ingest = keys.create_key(repo, "laptops", "ingest")
    reader = keys.create_key(repo, "grafana", "read")
    body = (OTLP / "claude-code-logs.json").read_bytes()
    with TestClient(create_app(sqlite_url)) as client:
        json_type = {"Content-Type": otlp.JSON}
        assert client.post("/v1/logs", content=body, headers=json_type).status_code == 401
        denied = client.post(
            "/v1/logs", content=body, headers={**json_type, "Authorization": f"Bearer {reader}"}
        )
        assert denied.status_code == 403
        allowed = client.post(
            "/v1/logs", content=body, headers={**json_type, "Authorization": f"Bearer {ingest}"}
        )
        assert allowed.status_code == 200


# -- Claude Code's telemetry ---------------------------------------------------------------


def _assert_claude_code_calls(repo: Repository) -> None:
    calls = _calls(repo)
    assert sorted(calls) == ["claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929"]
    sonnet = calls["claude-sonnet-4-5-20250929"]
    # Anthropic's counting: input_tokens excludes the cache; nothing subtracted.
    assert (
        sonnet["input_tokens"],
        sonnet["cache_read_tokens"],
        sonnet["cache_write_tokens"],
        sonnet["output_tokens"],
    ) == (12, 18432, 2048, 523)
    assert (sonnet["cost_usd"], sonnet["cost_status"]) == (Decimal("0.021337"), "reported")
    assert sonnet["source"] == "claude_code_otel"
    assert sonnet["agent_id"] == "claude-code"
    assert (sonnet["session_id"], sonnet["request_id"]) == (SESSION, REQ_A)
    assert sonnet["metadata"]["user.email"] == "dev@example.com"
    assert sonnet["metadata"]["organization.id"] == "a1c4e7f0-2b5d-4c8e-9f1a-3d6b9e2c5f80"
    assert sonnet["duration_ms"] == 8412
    assert sonnet["finished_at"].isoformat() == "2026-11-20T10:15:30.412000+00:00"
    haiku = calls["claude-haiku-4-5-20251001"]
    assert (haiku["cost_usd"], haiku["cost_status"]) == (Decimal("0.00114"), "reported")
    session = session_run_id(SESSION)
    assert {c["run_id"] for c in calls.values()} == {session}
    run = _runs(repo)[session]
    assert (run["kind"], run["key"], run["agent_id"]) == ("session", SESSION, "claude-code")


def test_claude_code_api_request_events_as_json(client: TestClient, sqlite_url: str) -> None:
    body = (OTLP / "claude-code-logs.json").read_bytes()
    response = client.post("/v1/logs", content=body, headers={"Content-Type": otlp.JSON})
    assert response.status_code == 200
    assert response.json() == {}
    _assert_claude_code_calls(open_repository(sqlite_url))


def test_claude_code_events_as_gzipped_protobuf(client: TestClient, sqlite_url: str) -> None:
    request = json_format.Parse(
        (OTLP / "claude-code-logs.json").read_text(), ExportLogsServiceRequest()
    )
    response = client.post(
        "/v1/logs",
        content=gzip.compress(request.SerializeToString()),
        headers={"Content-Type": otlp.PROTOBUF, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert (
        ExportLogsServiceResponse.FromString(response.content).partial_success.rejected_log_records
        == 0
    )
    _assert_claude_code_calls(open_repository(sqlite_url))


def test_claude_code_events_through_the_real_log_exporter(
    server: ServerProcess, sqlite_url: str
) -> None:
    records = list(otlp.log_records((OTLP / "claude-code-logs.json").read_bytes(), otlp.JSON))
    provider = LoggerProvider(resource=Resource.create(records[0]["resource"]))
    exporter = OTLPLogExporter(endpoint=f"{server.url}/v1/logs", timeout=30)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("com.anthropic.claude_code.events")
    for record in records:
        logger.emit(
            LogRecord(
                timestamp=_T0,
                body=record["body"],
                attributes={k: str(v) for k, v in record["attributes"].items()},
            )
        )
    provider.shutdown()
    _assert_claude_code_calls(open_repository(sqlite_url))


def test_a_bad_event_is_rejected_and_the_others_go_in(client: TestClient, sqlite_url: str) -> None:
    document = orjson.loads((OTLP / "claude-code-logs.json").read_bytes())
    records = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    for attribute in records[3]["attributes"]:
        if attribute["key"] == "output_tokens":
            attribute["value"] = {"stringValue": "-64"}
    response = client.post(
        "/v1/logs", content=orjson.dumps(document), headers={"Content-Type": otlp.JSON}
    )
    partial = response.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    assert "output_tokens" in partial["errorMessage"]
    assert sorted(_calls(open_repository(sqlite_url))) == ["claude-sonnet-4-5-20250929"]


# -- never twice: telemetry and llmledger import of the same session -----------------------


def _line(msg: str, request: str, at: str, model: str, usage: dict[str, int]) -> dict[str, Any]:
    """A line of the session's transcript: one API request."""
    return {
        "type": "assistant",
        "sessionId": SESSION,
        "cwd": "/home/dev/p",
        "timestamp": at,
        "requestId": request,
        "message": {
            "id": msg,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "ok"}],
            "usage": usage,
        },
    }


def _transcript_lines() -> list[dict[str, Any]]:
    """The session's transcript: the two API requests the telemetry reports, and one more
    (before telemetry was turned on)."""
    sonnet = {
        "input_tokens": 12,
        "cache_read_input_tokens": 18432,
        "cache_creation_input_tokens": 2048,
        "output_tokens": 523,
    }
    haiku = {"input_tokens": 820, "output_tokens": 64}
    return [
        _line(
            "msg_0",
            "req_earlier",
            "2026-11-20T10:00:00Z",
            "claude-sonnet-4-5-20250929",
            sonnet,
        ),
        _line("msg_A", REQ_A, "2026-11-20T10:15:30Z", "claude-sonnet-4-5-20250929", sonnet),
        _line("msg_B", REQ_B, "2026-11-20T10:15:36Z", "claude-haiku-4-5-20251001", haiku),
    ]


def _transcript(home: Path) -> Path:
    """A Claude home holding the session's transcript."""
    path = home / "projects" / "-home-dev-p" / f"{SESSION}.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in _transcript_lines()))
    return home


def _by_request(repo: Repository) -> dict[str, tuple[str, str]]:
    rows = repo.fetch("SELECT request_id, source, cost_status FROM calls")
    assert len(rows) == len({row[0] for row in rows}), rows
    return {row[0]: (row[1], row[2]) for row in rows}


_EXPECTED = {
    "req_earlier": ("claude_code_transcript", "computed"),
    REQ_A: ("claude_code_otel", "reported"),
    REQ_B: ("claude_code_otel", "reported"),
}


def test_import_then_telemetry_counts_each_request_once(
    client: TestClient, sqlite_url: str, tmp_path: Path
) -> None:
    repo = open_repository(sqlite_url)
    summary = import_logs(repo, ["claude"], [_transcript(tmp_path / "claude")], workers=1)
    assert summary.calls_added == 3
    body = (OTLP / "claude-code-logs.json").read_bytes()
    client.post("/v1/logs", content=body, headers={"Content-Type": otlp.JSON})
    assert _by_request(repo) == _EXPECTED
    # Both copies file under the session's one run.
    assert {row[0] for row in repo.fetch("SELECT run_id FROM calls")} == {session_run_id(SESSION)}


def test_telemetry_then_import_counts_each_request_once(
    client: TestClient, sqlite_url: str, tmp_path: Path
) -> None:
    body = (OTLP / "claude-code-logs.json").read_bytes()
    client.post("/v1/logs", content=body, headers={"Content-Type": otlp.JSON})
    repo = open_repository(sqlite_url)
    summary = import_logs(repo, ["claude"], [_transcript(tmp_path / "claude")], workers=1)
    assert summary.calls_added == 1
    assert summary.duplicates == 2
    assert _by_request(repo) == _EXPECTED


def test_a_call_recorded_live_by_llmledger_run_keeps_its_place(
    client: TestClient, sqlite_url: str
) -> None:
    repo = open_repository(sqlite_url)
    run_id = repo.create_run("command", name="claude -p")
    live = Call(
        usage=Usage(
            input_tokens=12, cache_read_tokens=18432, cache_write_tokens=2048, output_tokens=523
        ),
        source="claude_code_stream_json",
        model="claude-sonnet-4-5-20250929",
        dedupe_key=f"msg_A:{REQ_A}",
        message_id="msg_A",
        request_id=REQ_A,
        session_id=SESSION,
    )
    repo.add_calls([live], run_id=run_id)
    body = (OTLP / "claude-code-logs.json").read_bytes()
    client.post("/v1/logs", content=body, headers={"Content-Type": otlp.JSON})
    assert _by_request(repo) == {
        REQ_A: ("claude_code_stream_json", "unpriced"),
        REQ_B: ("claude_code_otel", "reported"),
    }


def test_import_to_the_server_after_telemetry_counts_each_request_once(
    client: TestClient, sqlite_url: str
) -> None:
    """``llmledger import --to`` posts the transcript's calls to ``POST /v1/calls``: those the
    telemetry sent already are duplicates there too."""
    body = (OTLP / "claude-code-logs.json").read_bytes()
    client.post("/v1/logs", content=body, headers={"Content-Type": otlp.JSON})
    items = [{"payload": line, "format": "claude_code_transcript"} for line in _transcript_lines()]
    answer = client.post("/v1/calls", json={"items": items, "host": "laptop-ana"}).json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (1, 2, [])
    assert _by_request(open_repository(sqlite_url)) == _EXPECTED


def test_an_event_without_request_id_is_keyed_by_session_and_sequence(
    client: TestClient, sqlite_url: str
) -> None:
    """Claude Code sends no ``request_id`` when the API returned none (some third-party
    backends): the event is keyed by its session and ``event.sequence``, so a resend is still
    one call."""
    document = orjson.loads((OTLP / "claude-code-logs.json").read_bytes())
    records = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    for record in records:
        record["attributes"] = [a for a in record["attributes"] if a["key"] != "request_id"]
    for _ in range(2):
        client.post("/v1/logs", content=orjson.dumps(document), headers={"Content-Type": otlp.JSON})
    keys = sorted(row["dedupe_key"] for row in _calls_rows(open_repository(sqlite_url)))
    assert keys == [f"claude-otel:{SESSION}:2", f"claude-otel:{SESSION}:4"]


def test_parse_reads_an_otlp_json_export_by_the_same_rules() -> None:
    """``llmledger parse``/``import`` of an OTel export and the receiver share the reader: the
    agent span's summed usage is not a call there either."""
    from llmledger.sources import parse

    parsed = parse(orjson.loads((OTLP / "genai-traces.json").read_bytes()), format="otel")
    assert [c.usage.input_tokens for c in parsed.calls] == [1976, 2000]


def test_text_the_store_cannot_hold_is_cleaned_or_rejected(db_url: str) -> None:
    """A NUL character (which PostgreSQL cannot store) in a span's name or agent is dropped
    from the run; in a model name it rejects that span alone; a trace id that is not hex
    refuses the body (400)."""
    document = orjson.loads((OTLP / "genai-traces.json").read_bytes())
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1]["name"] = "invoke_agent class\x00ifier"
    spans[1]["attributes"][1]["value"] = {"stringValue": "class\x00ifier"}
    spans[3]["attributes"][3]["value"] = {"stringValue": "gpt-4o\x00"}
    with TestClient(create_app(db_url, no_auth=True)) as client:
        answer = client.post(
            "/v1/traces", content=orjson.dumps(document), headers={"Content-Type": otlp.JSON}
        ).json()
        assert answer["partialSuccess"]["rejectedSpans"] == "1"
        spans[0]["traceId"] = "not-hex"
        refused = client.post(
            "/v1/traces", content=orjson.dumps(document), headers={"Content-Type": otlp.JSON}
        )
        assert refused.status_code == 400
    repo = open_repository(db_url)
    agent = _runs(repo)[span_run_id("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b173")]
    assert (agent["name"], agent["agent_id"]) == ("invoke_agent classifier", "classifier")
    assert len(_calls_rows(repo)) == 1
    repo.engine.dispose()
