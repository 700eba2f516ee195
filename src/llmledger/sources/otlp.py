"""OTLP export requests, protobuf or JSON: their spans and log records as plain dicts.

The OTLP/HTTP receiver (:mod:`llmledger.api.otlp`) takes ``ExportTraceServiceRequest`` and
``ExportLogsServiceRequest`` bodies in the two encodings of the OTLP specification: binary
protobuf (decoded by ``opentelemetry-proto``'s generated classes) and JSON (camelCase field
names, trace and span ids in hex, 64-bit integers as strings). Both become the same shape,
the one :mod:`llmledger.sources.otel` reads:

- a span: ``traceId``, ``spanId``, ``parentSpanId`` (hex; ``""`` for a root), ``name``,
  ``startTimeUnixNano`` and ``endTimeUnixNano`` (ints), ``status`` (``{"code": int}``),
  ``attributes`` (a map), ``resource`` (the resource's attributes, a map);
- a log record: ``timeUnixNano``, ``observedTimeUnixNano``, ``body`` (the value),
  ``attributes``, ``resource``, ``scope`` (the instrumentation scope's name).

Attribute values are plain Python values: strings, ints (an OTLP/JSON ``intValue`` string
made an int), floats, bools, lists, maps; bytes as hex. Pure: no store, no HTTP.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from llmledger.errors import ParseError

__all__ = ["FORMAT", "log_records", "spans"]

FORMAT = "otlp"

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


def spans(body: bytes, encoding: str) -> Iterator[dict[str, Any]]:
    """The spans of an ``ExportTraceServiceRequest`` body (``encoding``: :data:`PROTOBUF` or
    :data:`JSON`). Raises :class:`ParseError` for a body that cannot be decoded."""
    if encoding == PROTOBUF:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        try:
            request = ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            raise ParseError(FORMAT, f"not an ExportTraceServiceRequest: {exc}") from None
        return _proto_spans(request)
    return _json_spans(_json_body(body, "resourceSpans"))


def log_records(body: bytes, encoding: str) -> Iterator[dict[str, Any]]:
    """The log records of an ``ExportLogsServiceRequest`` body (see :func:`spans`)."""
    if encoding == PROTOBUF:
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        try:
            request = ExportLogsServiceRequest.FromString(body)
        except DecodeError as exc:
            raise ParseError(FORMAT, f"not an ExportLogsServiceRequest: {exc}") from None
        return _proto_logs(request)
    return _json_logs(_json_body(body, "resourceLogs"))


# -- protobuf -------------------------------------------------------------------------------


def _proto_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_proto_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _proto_attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _proto_attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _proto_value(kv.value) for kv in items}


def _proto_spans(request: Any) -> Iterator[dict[str, Any]]:
    for resource_spans in request.resource_spans:
        resource = _proto_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "traceId": span.trace_id.hex(),
                    "spanId": span.span_id.hex(),
                    "parentSpanId": span.parent_span_id.hex(),
                    "name": span.name,
                    "startTimeUnixNano": span.start_time_unix_nano,
                    "endTimeUnixNano": span.end_time_unix_nano,
                    "status": {"code": span.status.code},
                    "attributes": _proto_attributes(span.attributes),
                    "resource": resource,
                }


def _proto_logs(request: Any) -> Iterator[dict[str, Any]]:
    for resource_logs in request.resource_logs:
        resource = _proto_attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope.name
            for record in scope_logs.log_records:
                yield {
                    "timeUnixNano": record.time_unix_nano,
                    "observedTimeUnixNano": record.observed_time_unix_nano,
                    "body": _proto_value(record.body),
                    "eventName": record.event_name,
                    "attributes": _proto_attributes(record.attributes),
                    "traceId": record.trace_id.hex(),
                    "spanId": record.span_id.hex(),
                    "resource": resource,
                    "scope": scope,
                }


# -- JSON -----------------------------------------------------------------------------------


def _json_body(body: bytes, top: str) -> list[Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(FORMAT, f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ParseError(FORMAT, f"expected an object with {top!r}")
    items = document.get(top, [])
    if not isinstance(items, list):
        raise ParseError(FORMAT, f"{top}: expected a list", field=top)
    return items


def _objects(obj: Mapping[str, Any], key: str) -> Iterator[Mapping[str, Any]]:
    items = obj.get(key) or []
    if not isinstance(items, list):
        raise ParseError(FORMAT, f"{key}: expected a list", field=key)
    for item in items:
        if not isinstance(item, dict):
            raise ParseError(FORMAT, f"{key}[]: expected an object", field=key)
        yield item


_HEX = re.compile(r"[0-9a-fA-F]{0,64}")


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "intValue":
        # OTLP/JSON writes int64 as a string; a sign is kept so that a bad count is rejected.
        if isinstance(inner, str):
            try:
                return int(inner)
            except ValueError:
                return inner
        return inner
    if kind == "arrayValue":
        values = inner.get("values", []) if isinstance(inner, dict) else []
        return [_json_value(v) for v in values] if isinstance(values, list) else None
    if kind == "kvlistValue":
        return _json_attributes(inner if isinstance(inner, dict) else {}, "values")
    if kind == "bytesValue" and isinstance(inner, str):
        try:
            return base64.b64decode(inner, validate=True).hex()
        except binascii.Error:
            return inner
    return inner


def _json_attributes(obj: Mapping[str, Any], key: str = "attributes") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in _objects(obj, key):
        name = item.get("key")
        if isinstance(name, str):
            out[name] = _json_value(item.get("value"))
    return out


def _json_int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ParseError(FORMAT, f"{key}: expected an integer, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        return 0
    raise ParseError(FORMAT, f"{key}: expected an integer, got {value!r}", field=key)


def _json_id(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key) or ""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ParseError(FORMAT, f"{key}: expected a hex string, got {value!r}", field=key)
    return value.lower()


def _json_spans(items: list[Any]) -> Iterator[dict[str, Any]]:
    for resource_spans in items:
        if not isinstance(resource_spans, dict):
            raise ParseError(FORMAT, "resourceSpans[]: expected an object")
        resource = _json_attributes(resource_spans.get("resource") or {})
        for scope_spans in _objects(resource_spans, "scopeSpans"):
            for span in _objects(scope_spans, "spans"):
                status = span.get("status")
                code = status.get("code", 0) if isinstance(status, dict) else 0
                name = span.get("name")
                yield {
                    "traceId": _json_id(span, "traceId"),
                    "spanId": _json_id(span, "spanId"),
                    "parentSpanId": _json_id(span, "parentSpanId"),
                    "name": name if isinstance(name, str) else "",
                    "startTimeUnixNano": _json_int(span, "startTimeUnixNano"),
                    "endTimeUnixNano": _json_int(span, "endTimeUnixNano"),
                    "status": {"code": code},
                    "attributes": _json_attributes(span),
                    "resource": resource,
                }


def _json_logs(items: list[Any]) -> Iterator[dict[str, Any]]:
    for resource_logs in items:
        if not isinstance(resource_logs, dict):
            raise ParseError(FORMAT, "resourceLogs[]: expected an object")
        resource = _json_attributes(resource_logs.get("resource") or {})
        for scope_logs in _objects(resource_logs, "scopeLogs"):
            scope = scope_logs.get("scope")
            scope_name = scope.get("name", "") if isinstance(scope, dict) else ""
            for record in _objects(scope_logs, "logRecords"):
                event_name = record.get("eventName")
                yield {
                    "timeUnixNano": _json_int(record, "timeUnixNano"),
                    "observedTimeUnixNano": _json_int(record, "observedTimeUnixNano"),
                    "body": _json_value(record.get("body")),
                    "eventName": event_name if isinstance(event_name, str) else "",
                    "attributes": _json_attributes(record),
                    "traceId": _json_id(record, "traceId"),
                    "spanId": _json_id(record, "spanId"),
                    "resource": resource,
                    "scope": scope_name,
                }
