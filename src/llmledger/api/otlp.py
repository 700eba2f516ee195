"""The OTLP/HTTP receiver: ``POST /v1/traces`` and ``POST /v1/logs``.

What an OpenTelemetry exporter sends (the OTLP specification's HTTP transport):
``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` bodies, binary protobuf
(``application/x-protobuf``) or JSON (``application/json``), optionally gzip-compressed
(``Content-Encoding: gzip``). The answer is the matching ``Export…ServiceResponse`` in the
request's encoding: 200 with an empty message when everything was taken, 200 with
``partial_success`` (the rejected count and why) when some items were not; 400 for a body
that cannot be decoded (not retryable), 415 for another content type or encoding, 401/403
without an ingest key, 503 with ``Retry-After`` while the store is down (the exporter retries).

The keys are those of the other writes: a key with the ``ingest`` scope (or admin), once any
key exists. What the spans and events become is :mod:`llmledger.api.otlp_ingest`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message

from llmledger.api.app import pricer, repository
from llmledger.api.auth import require
from llmledger.api.errors import MAX_BODY_BYTES, error_responses
from llmledger.api.otlp_ingest import Outcome, ingest_log_records, ingest_spans
from llmledger.errors import ParseError
from llmledger.pricing import Pricer
from llmledger.sources import otlp
from llmledger.store import Repository

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["otlp"],
    dependencies=[Depends(require("ingest"))],
    responses=error_responses(401, 403, 413),
)

#: The largest body a gzip-compressed request may inflate to (4 × the body limit).
MAX_INFLATED_BYTES = 4 * MAX_BODY_BYTES
_MAX_ERRORS = 5

# The JSON encoding; the binary protobuf one (application/x-protobuf) is taken the same way
# but left out of the document, which no OpenAPI client can fill in.
_BODY = {
    "description": "An OTLP export request: application/json here, or application/x-protobuf",
    "content": {otlp.JSON: {"schema": {"type": "object"}}},
    "required": True,
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Taken; `partialSuccess` counts and explains what was rejected",
        "content": {otlp.PROTOBUF: {}, otlp.JSON: {}},
    },
    400: {"description": "The body cannot be decoded (not retryable)"},
    415: {"description": "Not application/x-protobuf or application/json, or not gzip"},
}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@router.post(
    "/traces",
    summary="OTLP/HTTP traces: GenAI spans become calls and runs",
    openapi_extra={"requestBody": _BODY},
    responses=_RESPONSES,
)
async def export_traces(request: Request) -> Response:
    """An OTLP ``ExportTraceServiceRequest``: every span that is a GenAI model call becomes a
    call (idempotent by response id, else trace and span id); its parent spans become runs."""
    return await _export(request, _traces)


@router.post(
    "/logs",
    summary="OTLP/HTTP logs: Claude Code's api_request events become calls",
    openapi_extra={"requestBody": _BODY},
    responses=_RESPONSES,
)
async def export_logs(request: Request) -> Response:
    """An OTLP ``ExportLogsServiceRequest``: every Claude Code ``api_request`` event becomes a
    call with its reported cost, session and user (other records are taken and ignored)."""
    return await _export(request, _logs)


_Handler = Callable[[Repository, Pricer, bytes, str], tuple[Outcome, Message]]


async def _export(request: Request, handler: _Handler) -> Response:
    encoding = _encoding(request)
    if encoding is None:
        return _refused(request, 415, "send application/x-protobuf or application/json")
    body = await request.body()
    try:
        body = _inflated(request, body)
    except _Refused as exc:
        return _refused(request, exc.status, exc.message)
    repo = repository(request)
    prices = pricer(request)
    try:
        outcome, message = await run_in_threadpool(handler, repo, prices, body, encoding)
    except ParseError as exc:
        return _refused(request, 400, str(exc))
    if outcome.rejected:
        request.app.state.metrics.rejected(outcome.rejected)
    return _answer(message, encoding)


def _traces(
    repo: Repository, prices: Pricer, body: bytes, encoding: str
) -> tuple[Outcome, Message]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    outcome = ingest_spans(repo, prices, list(otlp.spans(body, encoding)))
    response = ExportTraceServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_spans = len(outcome.rejected)
        response.partial_success.error_message = _message(outcome.rejected)
    return outcome, response


def _logs(repo: Repository, prices: Pricer, body: bytes, encoding: str) -> tuple[Outcome, Message]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    outcome = ingest_log_records(repo, prices, list(otlp.log_records(body, encoding)))
    response = ExportLogsServiceResponse()
    if outcome.rejected:
        response.partial_success.rejected_log_records = len(outcome.rejected)
        response.partial_success.error_message = _message(outcome.rejected)
    return outcome, response


def _message(rejected: Iterable[str]) -> str:
    errors = list(rejected)
    text = "; ".join(errors[:_MAX_ERRORS])
    if len(errors) > _MAX_ERRORS:
        text += f"; and {len(errors) - _MAX_ERRORS} more"
    return text


def _encoding(request: Request) -> str | None:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in (otlp.PROTOBUF, "application/protobuf"):
        return otlp.PROTOBUF
    if media == otlp.JSON:
        return otlp.JSON
    return None


def _inflated(request: Request, body: bytes) -> bytes:
    coding = request.headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding != "gzip":
        raise _Refused(415, f"Content-Encoding {coding!r}: send gzip or none")
    inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(body, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise _Refused(400, f"the gzip body cannot be inflated: {exc}") from None
    if inflate.unconsumed_tail:
        raise _Refused(413, f"the body inflates to more than {MAX_INFLATED_BYTES} bytes")
    if not inflate.eof:
        raise _Refused(400, "the gzip body is truncated")
    return out


def _answer(message: Message, encoding: str) -> Response:
    if encoding == otlp.JSON:
        return Response(MessageToJson(message, indent=None), media_type=otlp.JSON)
    return Response(message.SerializeToString(), media_type=otlp.PROTOBUF)


def _refused(request: Request, status: int, message: str) -> Response:
    """An error answer: a JSON ``{"code", "message", "detail"}`` (the fields of
    ``google.rpc.Status`` in JSON, and this service's ``detail``), counted as a rejected
    payload in ``llmledger_ingest_failures_total``."""
    request.app.state.metrics.rejected(["payload"])
    return Response(
        orjson.dumps({"code": status, "message": message, "detail": message}),
        status_code=status,
        media_type=otlp.JSON,
    )
