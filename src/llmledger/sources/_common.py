"""Shared pieces of the parsers: decoded records, typed field access, counts and timestamps.

Every accessor raises :class:`~llmledger.errors.ParseError` naming the field when a value has
the wrong type, so that a malformed payload never surfaces as a ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson

from llmledger.call import Call
from llmledger.errors import ParseError, UsageError
from llmledger.usage import Usage
from llmledger.values import EARLIEST, LATEST, MAX_USD

JsonObj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Summary:
    """The result a session or turn reports about itself (Claude Code ``result``, Gemini CLI).

    ``usage`` is the result's own ``usage`` object (Claude Code: main agent loop only);
    ``model_usage`` the per-model totals it reports; ``total_cost_usd`` its reported cost.
    """

    session_id: str | None = None
    duration_ms: int | None = None
    duration_api_ms: int | None = None
    num_turns: int | None = None
    is_error: bool | None = None
    subtype: str | None = None
    stop_reason: str | None = None
    total_cost_usd: Decimal | None = None
    reported_cost_by_model: dict[str, Decimal] = field(default_factory=dict)
    usage: Usage | None = None
    model_usage: dict[str, Usage] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record left out: the 1-based ``line`` it starts on (None for in-memory input), the
    kind of ``reason`` (as the importer counts them) and the ``message`` saying why."""

    line: int | None
    reason: str
    message: str


@dataclass(slots=True)
class Parsed:
    """What a parser yields: the format, one :class:`Call` per model request, a summary, and
    the records it skipped (each named with its line and why)."""

    format: str
    calls: list[Call]
    summary: Summary | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        """The sum of the calls' usage."""
        return Usage.total(c.usage for c in self.calls)


@dataclass(frozen=True, slots=True)
class Record:
    """One decoded JSON value and the 1-based line it starts on (None for in-memory input)."""

    line: int | None
    value: Any


@dataclass(slots=True)
class Ctx:
    """Where a parser is reading (for error messages) and the warnings it collects."""

    fmt: str
    path: str | Path | None = None
    warnings: list[str] = field(default_factory=list)
    line: int | None = None
    skipped: list[Skipped] = field(default_factory=list)

    def error(
        self, message: str, *, field: str | None = None, line: int | None = None
    ) -> ParseError:
        return ParseError(
            self.fmt, message, field=field, path=self.path, line=line if line else self.line
        )

    def warn(self, message: str, *, line: int | None = None) -> None:
        where = line or self.line
        self.warnings.append(f"line {where}: {message}" if where else message)

    def skip(self, reason: str, message: str, *, line: int | None = None) -> None:
        """Leave out the record at ``line`` (default: the current one), saying why."""
        self.skipped.append(Skipped(line or self.line, reason, message))

    def skip_error(self, exc: ParseError, reason: str = "invalid usage") -> None:
        """Leave out the record a parser rejected with ``exc``."""
        self.skip(reason, exc.detail, line=exc.line or self.line)


# -- decoding -----------------------------------------------------------------------------------

_SSE_SKIP = (b"event:", b"id:", b"retry:", b":")
_CONTINUATION = frozenset(b" \t}],")


_BOM = b"\xef\xbb\xbf"
_UTF16_STARTS = (b"\xff\xfe", b"\xfe\xff", b"{\x00", b"\x00{", b"[\x00", b"\x00[")


def decode_document(data: bytes, ctx: Ctx) -> list[Record] | Record:
    """Decode a whole file: one JSON document (returned as a Record) or JSON lines (a list).

    JSON lines may be compact or pretty-printed (an object spanning several lines), and may
    carry SSE ``data:`` prefixes. A UTF-8 byte-order mark at the start is ignored. A truncated
    last record is skipped with a warning; a malformed record anywhere else is skipped and
    noted in ``ctx.skipped`` with its line and the reason, as is UTF-16 input (as a whole).
    """
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if data.startswith(_UTF16_STARTS):
        ctx.skip("not UTF-8", "the input is UTF-16 text; only UTF-8 JSON is read", line=1)
        return []
    try:
        return Record(1, orjson.loads(data))
    except orjson.JSONDecodeError:
        pass
    records = [Record(line, value) for line, value in iter_json_records(data, ctx)]
    if not records and not ctx.skipped:
        raise ctx.error("no complete JSON value in the input")
    return records


def json_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Why ``raw`` is not JSON, in words (orjson's messages name the symptom)."""
    msg = exc.msg
    if "UTF-8" in msg and "byte order mark" not in msg:
        return "not valid UTF-8 text"
    if "depth limit" in msg or "recursion" in msg:
        return "JSON nested more than 1024 levels deep"
    if raw[exc.pos : exc.pos + 3] in (b"NaN", b"Inf", b"-In"):
        return "NaN and Infinity are not JSON numbers"
    return f"malformed JSON: {msg} at character {exc.pos + 1}"


def iter_raw_records(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Split JSON-lines bytes into (start line, raw record) without decoding them.

    A record starts on a line whose first byte is not whitespace or a closing bracket; the
    following indented or closing lines belong to it (pretty-printed JSON).
    """
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # after the last newline
    return iter_raw_lines(lines)


def iter_raw_lines(lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
    """:func:`iter_raw_records` over bytes already split at newlines."""
    if all(map(bytes.startswith, lines, repeat(b"{"))):
        return enumerate(lines, 1)  # every line is a compact record, as agents write them
    return _grouped_records(lines)


def _grouped_records(lines: list[bytes]) -> Iterator[tuple[int, bytes]]:
    start = 0
    parts: list[bytes] = []
    for number, line in enumerate(lines, 1):
        if line[:1] == b"{":  # the common case: a compact record
            if parts:
                yield start, parts[0] if len(parts) == 1 else b"\n".join(parts)
            start, parts = number, [line]
            continue
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        if line.startswith(b"data:"):
            line = line[5:].lstrip()
            if not line or line == b"[DONE]":
                continue
        elif line.startswith(_SSE_SKIP):
            continue
        if line[0] in _CONTINUATION and parts:
            parts.append(line)
            continue
        if parts:
            yield start, parts[0] if len(parts) == 1 else b"\n".join(parts)
        start, parts = number, [line]
    if parts:
        yield start, parts[0] if len(parts) == 1 else b"\n".join(parts)


def iter_json_records(data: bytes, ctx: Ctx) -> Iterator[tuple[int, Any]]:
    """Decode JSON-lines records; a malformed one is skipped and noted (see decode_document)."""
    pending: tuple[int, bytes] | None = None
    for start, raw in iter_raw_records(data):
        if pending is not None:
            yield from _decode_record(*pending, ctx, last=False)
        pending = (start, raw)
    if pending is not None:
        yield from _decode_record(*pending, ctx, last=True)


def _decode_record(start: int, raw: bytes, ctx: Ctx, *, last: bool) -> Iterator[tuple[int, Any]]:
    try:
        decoded = list(_decode_lines(start, raw))
    except orjson.JSONDecodeError as exc:
        if last and exc.pos >= len(raw.rstrip()):
            ctx.warn("skipped a truncated last record", line=start)
        else:
            ctx.skip("malformed JSON", json_error(raw, exc), line=start)
        return
    yield from decoded


def _decode_lines(start: int, raw: bytes) -> Iterator[tuple[int, Any]]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # A compact line with leading whitespace was glued to the previous record.
        if b"\n" not in raw:
            raise
        try:
            values = [orjson.loads(line) for line in raw.split(b"\n")]
        except orjson.JSONDecodeError:
            raise exc from None  # the record's own error: its position is in ``raw``
        yield from ((start + i, v) for i, v in enumerate(values))
        return
    yield start, value


# -- typed access -------------------------------------------------------------------------------


def as_obj(value: object, ctx: Ctx, name: str) -> JsonObj:
    """``value`` as a JSON object, or a ParseError naming ``name``."""
    if not isinstance(value, dict):
        raise ctx.error(f"expected a JSON object, got {type(value).__name__}", field=name)
    return value


def get_obj(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> JsonObj | None:
    """The object at ``obj[key]``; None when missing or null."""
    value = obj.get(key)
    if value is None:
        return None
    return as_obj(value, ctx, name or key)


def get_list(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> list[Any]:
    """The list at ``obj[key]``; empty when missing or null."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.error(f"expected a list, got {type(value).__name__}", field=name or key)
    return value


def get_str(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> str | None:
    """The string at ``obj[key]``; None when missing or null."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ctx.error(f"expected a string, got {type(value).__name__}", field=name or key)


def get_bool(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> bool | None:
    """The boolean at ``obj[key]``; None when missing or null."""
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ctx.error(f"expected true or false, got {value!r}", field=name or key)


def count(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> int | None:
    """A non-negative token count at ``obj[key]``; None when missing or null."""
    value = obj.get(key)
    if value is None:
        return None
    return to_count(value, ctx, name or key)


def to_count(value: object, ctx: Ctx, name: str) -> int:
    """``value`` as a non-negative integer (integral floats accepted)."""
    if isinstance(value, bool):
        raise ctx.error(f"expected a token count, got {value!r}", field=name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ctx.error(f"expected a token count, got {value!r}", field=name)
    if value < 0:
        raise ctx.error(f"must not be negative, got {value}", field=name)
    return value


def money(obj: Mapping[str, Any], key: str, ctx: Ctx, name: str | None = None) -> Decimal | None:
    """A USD amount at ``obj[key]`` as an exact Decimal of its JSON text; None when missing."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ctx.error(f"expected a number, got {value!r}", field=name or key)
    try:
        # str() of a float is its shortest round-trip text, i.e. the digits the JSON held.
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ctx.error(f"expected a number, got {value!r}", field=name or key) from None
    if not amount.is_finite():
        raise ctx.error(f"expected a finite number, got {value!r}", field=name or key)
    if abs(amount) >= MAX_USD:
        raise ctx.error(f"{value!r} USD is beyond any real cost", field=name or key)
    return amount


def sub(total: int | None, parts: int, ctx: Ctx, name: str, parts_name: str) -> int | None:
    """``total - parts`` for an inclusive count; raises rather than going negative."""
    if total is None:
        return None
    if parts > total:
        raise ctx.error(
            f"{name} ({total}) is less than {parts_name} ({parts}) that it should include",
            field=name,
        )
    return total - parts


def plus(*counts: int | None) -> int | None:
    """Sum where None is "not reported"; None only when every count is None."""
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def make_usage(ctx: Ctx, **buckets: int | None) -> Usage:
    """Build a Usage, turning its validation error into a ParseError naming the field."""
    try:
        return Usage(**buckets)
    except UsageError as exc:
        raise ctx.error(str(exc), field=exc.field) from None


# -- time ---------------------------------------------------------------------------------------


def in_time_range(at: datetime, value: object, ctx: Ctx, name: str) -> datetime:
    """``at`` (read from ``value``) when it lies in the accepted range; else raises."""
    if EARLIEST <= at < LATEST:
        return at
    raise _out_of_range(value, ctx, name)


def _out_of_range(value: object, ctx: Ctx, name: str) -> ParseError:
    return ctx.error(
        f"timestamp {value!r} is outside the accepted range (2000-01-01 to 2100-01-01 UTC)",
        field=name,
    )


def timestamp(value: object, ctx: Ctx, name: str = "timestamp") -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime in the accepted range (see
    :data:`~llmledger.values.EARLIEST`); None when missing."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ctx.error(f"expected an ISO-8601 timestamp, got {value!r}", field=name)
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        elif parsed.tzinfo is not UTC:
            parsed = parsed.astimezone(UTC)
    except ValueError:
        raise ctx.error(f"expected an ISO-8601 timestamp, got {value!r}", field=name) from None
    except OverflowError:  # year 1 or 9999 moved out of the calendar by its offset
        raise _out_of_range(value, ctx, name) from None
    return in_time_range(parsed, value, ctx, name)


def unix_seconds(value: object, ctx: Ctx, name: str) -> datetime | None:
    """Unix seconds (int or float) as an aware UTC datetime in the accepted range; None
    when missing."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(f"expected Unix seconds, got {value!r}", field=name)
    try:
        at = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ctx.error(f"timestamp out of range: {value!r}", field=name) from None
    return in_time_range(at, value, ctx, name)


# -- naming -------------------------------------------------------------------------------------

_PROVIDER_PREFIXES = (
    ("claude", "anthropic"),
    ("anthropic", "anthropic"),
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt", "openai"),
    ("codex", "openai"),
    ("gemini", "google"),
    ("gemma", "google"),
    ("mistral", "mistral"),
    ("llama", "meta"),
    ("grok", "xai"),
    ("deepseek", "deepseek"),
)


def guess_provider(model: str | None) -> str | None:
    """The provider a well-known model name belongs to; None when unknown."""
    if not model:
        return None
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, provider in _PROVIDER_PREFIXES:
        if name.startswith(prefix):
            return provider
    return None


def join_key(*parts: str | None) -> str | None:
    """Join the known parts of a dedupe key with ``:``; None when the first part is unknown."""
    if not parts or not parts[0]:
        return None
    return ":".join(p for p in parts if p)
