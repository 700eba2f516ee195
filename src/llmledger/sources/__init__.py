"""Parsers: raw usage payloads of every supported provider and agent CLI -> :class:`Call` records.

>>> parsed = parse_file("result.json")          # format detected from the content
>>> parsed.format, parsed.usage.total_tokens, parsed.summary

Every parser normalizes to the canonical buckets of :class:`~llmledger.usage.Usage`
(usage-formats.md §10) and raises :class:`~llmledger.errors.ParseError` for anything it cannot
read. Parsers are pure: no I/O beyond reading the file they are handed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import InvalidOperation
from pathlib import Path

from llmledger.call import Call
from llmledger.errors import ParseError
from llmledger.sources import (
    anthropic,
    bedrock,
    claude_code,
    claude_transcript,
    codex,
    gemini,
    gemini_cli,
    langchain,
    openai,
    otel,
)
from llmledger.sources._common import Ctx, Parsed, Record, Skipped, Summary, decode_document
from llmledger.sources._detect import detect_records
from llmledger.sources.claude_transcript import dedupe_calls, iter_transcript, transcript_call

__all__ = [
    "ALIASES",
    "FORMATS",
    "Parsed",
    "Skipped",
    "Summary",
    "dedupe_calls",
    "detect",
    "iter_transcript",
    "parse",
    "parse_file",
    "transcript_call",
]

_Parser = Callable[[Sequence[Record], Ctx], tuple[list[Call], Summary | None]]

#: Every supported format name and its parser.
_PARSERS: dict[str, _Parser] = {
    claude_code.RESULT: claude_code.parse_result,
    claude_code.STREAM: claude_code.parse_stream,
    claude_transcript.FORMAT: claude_transcript.parse_transcript,
    anthropic.MESSAGES: anthropic.parse_messages,
    anthropic.STREAM: anthropic.parse_stream,
    openai.CHAT: openai.parse_chat,
    openai.CHAT_STREAM: openai.parse_chat_stream,
    openai.RESPONSES: openai.parse_responses,
    openai.RESPONSES_STREAM: openai.parse_responses_stream,
    gemini.FORMAT: gemini.parse_response,
    gemini.STREAM: gemini.parse_stream,
    bedrock.FORMAT: bedrock.parse_converse,
    bedrock.STREAM: bedrock.parse_stream,
    langchain.FORMAT: langchain.parse_usage_metadata,
    codex.ROLLOUT: codex.parse_rollout,
    codex.EXEC: codex.parse_exec,
    gemini_cli.JSON: gemini_cli.parse_json,
    gemini_cli.STREAM: gemini_cli.parse_stream,
    gemini_cli.CHAT: gemini_cli.parse_chat,
    otel.FORMAT: otel.parse_spans,
}

#: The registry of format names, in a stable order.
FORMATS: tuple[str, ...] = tuple(_PARSERS)

#: Short names accepted wherever a format name is.
ALIASES: dict[str, str] = {
    "claude_code_json": claude_code.RESULT,
    "anthropic": anthropic.MESSAGES,
    "openai_chat": openai.CHAT,
    "openai_chat_stream": openai.CHAT_STREAM,
    "gemini": gemini.FORMAT,
    "gemini_stream": gemini.STREAM,
    "bedrock": bedrock.FORMAT,
    "langchain": langchain.FORMAT,
    "otel_genai": otel.FORMAT,
    "otel": otel.FORMAT,
}

# Shapes a parser may meet in a malformed payload despite its checks; they mean "not this format".
_SHAPE_ERRORS = (TypeError, KeyError, IndexError, AttributeError, ArithmeticError, InvalidOperation)


def _resolve(name: str) -> str:
    fmt = ALIASES.get(name, name)
    if fmt not in _PARSERS:
        known = ", ".join(FORMATS)
        raise ParseError("sources", f"unknown format {name!r}; known formats: {known}")
    return fmt


def _load(data: object, ctx: Ctx) -> tuple[list[Record], str]:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if isinstance(data, bytes | bytearray | memoryview):
        doc = decode_document(bytes(data), ctx)
        if isinstance(doc, list):
            return doc, "lines"
        data = doc.value
    if isinstance(data, list):
        return [Record(None, v) for v in data], "array"
    return [Record(None, data)], "object"


def detect(data: object, *, path: str | Path | None = None) -> str:
    """The format name of a payload: whole-file bytes or text, or decoded JSON.

    Raises :class:`ParseError` when the payload is not JSON or matches no known format.
    """
    ctx = Ctx("json", path)
    records, kind = _load(data, ctx)
    fmt = detect_records(records, kind)
    if fmt is None:
        raise ctx.error("cannot tell the format of this payload; pass format=NAME")
    return fmt


def parse(data: object, *, format: str | None = None, path: str | Path | None = None) -> Parsed:
    """Parse a payload (whole-file bytes or text, or decoded JSON) into calls.

    ``format`` is a name from :data:`FORMATS` (or :data:`ALIASES`); None or "auto" detects it.
    """
    ctx = Ctx(_resolve(format) if format and format != "auto" else "json", path)
    records, kind = _load(data, ctx)
    if not records:  # every record was skipped, and ctx.skipped says why
        name = "unknown" if ctx.fmt == "json" else ctx.fmt
        return Parsed(format=name, calls=[], warnings=ctx.warnings, skipped=ctx.skipped)
    if ctx.fmt == "json":
        fmt = detect_records(records, kind)
        if fmt is None:
            raise ctx.error("cannot tell the format of this payload; pass format=NAME")
        ctx.fmt = fmt
    calls, summary = _parse_records(records, ctx)
    skipped = sorted(ctx.skipped, key=lambda s: s.line or 0)
    return Parsed(
        format=ctx.fmt, calls=calls, summary=summary, warnings=ctx.warnings, skipped=skipped
    )


#: How many bad records a parser that stops at the first one is run again without.
_MAX_RETRIES = 100


def _parse_records(records: list[Record], ctx: Ctx) -> tuple[list[Call], Summary | None]:
    """Run the parser; a record it rejects (a ParseError naming its line) is left out and
    noted in ``ctx.skipped``, and the parser runs again on the rest. (The parsers of the
    large line formats skip bad records themselves, in one pass.)"""
    warnings, skipped = list(ctx.warnings), list(ctx.skipped)
    dropped: list[Skipped] = []
    while True:
        ctx.warnings, ctx.skipped, ctx.line = list(warnings), [*skipped, *dropped], None
        try:
            return _PARSERS[ctx.fmt](records, ctx)
        except _SHAPE_ERRORS as exc:
            raise ctx.error(f"unexpected payload shape: {exc!r}") from exc
        except ParseError as exc:
            at = [i for i, r in enumerate(records) if exc.line and r.line == exc.line]
            if len(records) < 2 or not at or len(dropped) == _MAX_RETRIES:
                raise
            del records[at[0]]
            dropped.append(Skipped(exc.line, "invalid usage", exc.detail))


def parse_file(path: str | Path, *, format: str | None = None) -> Parsed:
    """Read a file and :func:`parse` it; the path appears in every error and warning."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ParseError("sources", f"cannot read the file: {exc.strerror}", path=path) from None
    return parse(data, format=format, path=path)
