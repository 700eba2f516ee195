"""Reading one agent log file for an import (runs in the worker processes).

A Claude Code transcript is read from a byte offset up to its last complete newline; every
record holding the bytes ``"usage"`` is decoded (compact or pretty-printed JSON) and handed to
the sources' ``transcript_call``. Copies of a message inside the file are settled here (larger
token total wins, as ccusage v20); copies across files are settled by the importer. Each kept
call is priced and turned into a ready-to-write row of the ``calls`` table, filed under its
session's run (``session_run_id``). A line of the usual shape (a message id, plain counts, a
priced model) goes straight to its row without building a Call: decoded by msgspec into typed
structs (``_typed_row``), or, when its fields have other types, by orjson into a dict
(``_fast_row``). tests/test_import_read.py holds the three paths to the same results.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from llmledger.agents import BY_NAME, CODEX
from llmledger.call import Call
from llmledger.errors import LedgerError, ParseError
from llmledger.imports.plan import HEAD_BYTES, head_sha256
from llmledger.sources._common import iter_raw_lines
from llmledger.sources.anthropic import PROVIDER, plain_anthropic_counts, plain_counts
from llmledger.sources.claude_transcript import FORMAT as TRANSCRIPT
from llmledger.sources.claude_transcript import transcript_call
from llmledger.values import EARLIEST, LATEST, MAX_USD, datetime_to_micros, money_to_pico

if TYPE_CHECKING:
    from llmledger.pricing import Pricer

__all__ = ["ROW_AT", "ROW_COLUMNS", "FileResult", "ReadTask", "read_file", "session_run_id"]

#: The columns the fast paths fill with the same value on every row: a row built by them
#: leaves these out (see ``FileResult.shared``), so they come last.
_FAST_SHARED = (
    "source",
    "provider",
    "finished_at",
    "duration_ms",
    "reasoning_tokens",
    "currency",
    "token_provenance",
    "recorded_at",
)
#: Columns of a row as the worker builds it: the ``calls`` table's, less the id (spelled out,
#: so that workers need no SQLAlchemy; a test holds it to the schema).
ROW_COLUMNS: tuple[str, ...] = (
    "dedupe_key",
    "run_id",
    "model",
    "message_id",
    "request_id",
    "session_id",
    "project",
    "agent_id",
    "started_at",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "cost_usd",
    "cost_status",
    "price_version",
    "status",
    "metadata",
    *_FAST_SHARED,
)
#: The length of a row the fast paths build.
_NARROW = len(ROW_COLUMNS) - len(_FAST_SHARED)
#: Where each column is in a row.
ROW_AT = {name: i for i, name in enumerate(ROW_COLUMNS)}
#: Index of ``dedupe_key``, ``run_id``, ``message_id``, ``session_id``, ``project`` and
#: ``started_at`` in a row.
DEDUPE_KEY = ROW_COLUMNS.index("dedupe_key")
RUN_ID = ROW_COLUMNS.index("run_id")
MESSAGE_ID = ROW_COLUMNS.index("message_id")
PROJECT = ROW_COLUMNS.index("project")
SESSION_ID = ROW_COLUMNS.index("session_id")
STARTED_AT = ROW_COLUMNS.index("started_at")
_AGENT_IDS = {name: agent.agent_id for name, agent in BY_NAME.items()}
_MAX_ERRORS = 5
_SYNTHETIC = "<synthetic>"
_SHAPE_ERRORS = (LedgerError, ValueError, TypeError, KeyError, AttributeError, ArithmeticError)


@dataclass(frozen=True, slots=True)
class ReadTask:
    """What to read: a file of an agent from ``offset`` to ``size``; ``line_base`` lines
    precede ``offset``. ``session_id`` and ``project`` come from the path (Claude Code)."""

    path: str
    agent: str
    size: int
    offset: int = 0
    line_base: int = 0
    session_id: str | None = None
    project: str | None = None
    overrides_path: str | None = None
    recorded_at: int = 0
    #: Whether rows the fast paths build leave out the columns they share (see
    #: ``FileResult.shared``); the tests turn it off to compare.
    share_columns: bool = True


@dataclass(slots=True)
class FileResult:
    """What a file held: rows to write (with the facts the cross-file dedupe needs), how far
    it was read, and what was skipped and why."""

    path: str
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    #: Per row: (token total, reported cost in pico-dollars, has speed, is sidechain).
    info: list[tuple[int, int, bool, bool]] = field(default_factory=list)
    offset: int = 0
    lines: int = 0
    calls_seen: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    head_sha256: str | None = None
    cwd: str | None = None
    failed: str | None = None
    #: Why the file was not read, as the import counts it (with ``failed``).
    failed_reason: str = "unreadable file"
    #: (column, value) of the last columns of :data:`ROW_COLUMNS` when every row holds the
    #: same value in them (the fast paths' constants): the rows then leave them out, and the
    #: writer puts them in its SQL instead of binding them row by row. Empty when the rows
    #: hold every column.
    shared: tuple[tuple[str, Any], ...] = ()
    #: How many rows were built from a parsed Call (the general path).
    general: int = 0


# -- pricing ---------------------------------------------------------------------------------

_PRICERS: dict[str | None, Pricer] = {}


def _pricer(overrides_path: str | None) -> Pricer:
    pricer = _PRICERS.get(overrides_path)
    if pricer is None:
        from llmledger.pricing import Pricer

        pricer = _PRICERS[overrides_path] = Pricer(overrides_path)
    return pricer


def set_pricer(pricer: Pricer | None, overrides_path: str | None) -> None:
    """Use ``pricer`` in this process (the importer's own, when it reads files itself); None
    forgets the one in use, so that the next price builds a new one."""
    if pricer is None:
        _PRICERS.pop(overrides_path, None)
    else:
        _PRICERS[overrides_path] = pricer


def _price(call: Call, pricer: Pricer) -> tuple[int | None, str, str | None, int | None]:
    """(cost pico, status, price version, computed-from-tokens pico for a reported cost)."""
    if call.model == _SYNTHETIC:
        # Claude Code's placeholder for an error it made up locally: no API call, no cost.
        return 0, "computed", None, None
    price = pricer.price(call)
    cost = None if price.cost_usd is None else money_to_pico(price.cost_usd)
    computed = None
    if price.cost_status == "reported":
        again = pricer.price_usage(
            call.usage, call.model, call.provider, call.started_at or call.finished_at
        )
        computed = None if again.cost_usd is None else money_to_pico(again.cost_usd)
    return cost, price.cost_status, price.price_version, computed


# -- rows ------------------------------------------------------------------------------------

#: Namespace of the session run ids (any fixed UUID would do; this one must never change).
_SESSION_RUNS = uuid.UUID("5b0d3c1e-8f4a-4c52-9a57-6d1f2e7b9c40")
_RUN_IDS: dict[str, str] = {}


def session_run_id(session_id: str) -> str:
    """The id of the run an import files a session's calls under, derived from the session id
    so that the workers can put it in the rows they build. (A ledger may hold session runs
    that older versions created under random ids; the importer moves their rows there.)"""
    run_id = _RUN_IDS.get(session_id)
    if run_id is None:
        if len(_RUN_IDS) > 100_000:
            _RUN_IDS.clear()
        run_id = _RUN_IDS[session_id] = uuid.uuid5(_SESSION_RUNS, session_id).hex
    return run_id


def _run_of(session_id: str | None) -> str | None:
    return None if session_id is None else session_run_id(session_id)


def _micros(value: datetime | None) -> int | None:
    return None if value is None else datetime_to_micros(value)


def _info(call: Call) -> tuple[int, int, bool, bool]:
    reported = call.reported_cost_usd
    return (
        call.usage.total_tokens or 0,
        0 if reported is None else money_to_pico(Decimal(reported)),
        "speed" in call.metadata,
        call.metadata.get("is_sidechain") is True,
    )


def _row(call: Call, task: ReadTask, pricer: Pricer) -> tuple[Any, ...]:
    cost, status, version, computed = _price(call, pricer)
    meta = dict(call.metadata)
    if computed is not None:
        meta["computed_cost_pico"] = computed
    u = call.usage
    return (
        call.dedupe_key,
        _run_of(call.session_id),
        call.model,
        call.message_id,
        call.request_id,
        call.session_id,
        call.project,
        call.agent_id or _AGENT_IDS.get(task.agent),
        _micros(call.started_at),
        u.input_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.cache_write_5m_tokens,
        u.cache_write_1h_tokens,
        u.output_tokens,
        cost,
        status,
        version,
        call.status,
        orjson.dumps(meta).decode() if meta else None,
        # _FAST_SHARED:
        call.source,
        call.provider,
        _micros(call.finished_at),
        call.duration_ms,
        u.reasoning_tokens,
        "USD",
        call.token_provenance,
        task.recorded_at,
    )


def _better(new: tuple[int, int, bool, bool], old: tuple[int, int, bool, bool]) -> bool:
    # ccusage v20: larger token total, then higher cost, then the copy that carries speed.
    if new[0] != old[0]:
        return new[0] > old[0]
    if new[1] != old[1]:
        return new[1] > old[1]
    return new[2] and not old[2]


class _Collector:
    """Keeps the best copy of each dedupe key within one file."""

    def __init__(self, task: ReadTask, result: FileResult) -> None:
        self.task = task
        self.result = result
        self.pricer = _pricer(task.overrides_path)
        self.slots: dict[str, int] = {}
        # A kept copy is a Call, priced in finish(), or a row the fast path already built.
        self.kept: list[Call | tuple[Any, ...]] = []
        self.infos: list[tuple[int, int, bool, bool]] = []
        #: The line of each kept copy (0: not known), to name it if pricing it fails.
        self.lines: list[int] = []

    def add(self, call: Call, copies: int = 1, line: int = 0) -> None:
        """Keep ``call`` (standing for ``copies`` lines) unless a better copy is kept."""
        if call.dedupe_key is None:
            call.dedupe_key = call.key()
        self.keep(call.dedupe_key, call, _info(call), copies, line)

    def keep(
        self,
        key: str,
        kept: Call | tuple[Any, ...],
        info: tuple[int, int, bool, bool],
        copies: int = 1,
        line: int = 0,
    ) -> None:
        """Keep a call or its row under ``key`` unless a better copy is kept."""
        result = self.result
        result.calls_seen += copies
        result.duplicates += copies - 1
        slot = self.slots.get(key)
        if slot is None:
            self.slots[key] = len(self.kept)
            self.kept.append(kept)
            self.infos.append(info)
            self.lines.append(line)
            return
        result.duplicates += 1
        if _better(info, self.infos[slot]):
            self.kept[slot] = kept
            self.infos[slot] = info
            self.lines[slot] = line

    def finish(self) -> None:
        """Price the kept calls and turn them into rows; a call that cannot be priced or
        written (a value no check foresaw) is skipped and named."""
        result = self.result
        rows, infos = result.rows, result.info
        for kept, info, line in zip(self.kept, self.infos, self.lines, strict=True):
            if isinstance(kept, Call):
                try:
                    rows.append(_row(kept, self.task, self.pricer))
                except Exception as exc:
                    result.calls_seen -= 1
                    _skip(result, self.task.path, line, "unreadable line", _failure(exc))
                    continue
                result.general += 1
            else:
                rows.append(kept)
            infos.append(info)
        self.kept, self.infos, self.lines, self.slots = [], [], [], {}


def _failure(exc: BaseException) -> str:
    """What went wrong, for a line or file no check rejected before."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- Claude Code transcripts -------------------------------------------------------------------


def _skip(result: FileResult, path: str, line: int, reason: str, detail: str) -> None:
    result.skipped[reason] += 1
    if len(result.errors) < _MAX_ERRORS:
        result.errors.append(f"{path}:{line}: {detail}")


def _decode(raw: bytes) -> list[Any]:
    try:
        return [orjson.loads(raw)]
    except orjson.JSONDecodeError:
        if b"\n" not in raw:
            raise
        # Compact lines with leading whitespace were grouped as one record: decode each.
        return [orjson.loads(part) for part in raw.split(b"\n") if part.strip()]


def _rank(obj: dict[str, Any], u: dict[str, Any]) -> tuple[int, float, bool] | None:
    """The parser's copy ranking (token total, cost, speed) read straight from a line, or None
    when the usage is not plain counts (then every copy goes through the parser)."""
    split = u.get("cache_creation")
    split = split if type(split) is dict else None
    return _ranked(
        u.get("input_tokens"),
        u.get("output_tokens"),
        u.get("cache_read_input_tokens"),
        u.get("cache_creation_input_tokens"),
        None if split is None else split.get("ephemeral_5m_input_tokens"),
        None if split is None else split.get("ephemeral_1h_input_tokens"),
        split is not None,
        obj.get("costUSD"),
        "speed" in u,
    )


def _ranked(
    inp: Any,
    out: Any,
    read: Any,
    write: Any,
    five: Any,
    one: Any,
    split: bool,
    cost: Any,
    speed: bool,
) -> tuple[int, float, bool] | None:
    """Copies rank as ccusage v20 ranks them: token total (the cache writes at least their
    5m + 1h ``split``), then cost, then whether ``speed`` is reported, so that the larger of
    two ranks (as tuples) is the better copy. None when the values do not add up."""
    try:
        write = write or 0
        if split:
            write = max(write, (five or 0) + (one or 0))
        total = (inp or 0) + (out or 0) + write + (read or 0)
        return int(total), float(cost or 0), speed
    except (TypeError, ValueError):
        return None


_Fast = tuple[str, tuple[Any, ...], tuple[int, int, bool, bool]]


def _fast_row(obj: dict[str, Any], task: ReadTask, pricer: Pricer) -> _Fast | None:
    """(dedupe key, row, info) of an assistant line with a message id and plain counts, as
    ``transcript_call`` + ``_row`` would build them but without the Call, Usage and Decimal
    objects; None for anything else (or anything that could fail or log), which then takes
    the general path. ``test_import_read`` checks that both paths agree."""
    msg = obj.get("message")
    if type(msg) is not dict:
        return None
    u = msg.get("usage")
    msg_id = msg.get("id")
    if type(u) is not dict or type(msg_id) is not str or not msg_id:
        return None
    request_id = obj.get("requestId")
    model = msg.get("model")
    session_id = obj.get("sessionId")
    cwd = obj.get("cwd")
    agent_id = obj.get("agentId")
    if not (
        type(request_id) in _TEXT
        and type(model) in _TEXT
        and type(session_id) in _TEXT
        and type(cwd) in _TEXT
        and type(agent_id) in _TEXT
    ):
        return None  # transcript_call raises naming the field
    counts = plain_anthropic_counts(u)
    if counts is None or counts == _NO_COUNTS:
        return None
    return _build_row(
        task,
        pricer,
        msg_id,
        request_id,
        model,
        session_id,
        cwd,
        agent_id,
        counts,
        obj.get("costUSD"),
        obj.get("timestamp"),
        obj.get("isSidechain") is True,
        u.get("speed"),
        obj.get("isApiErrorMessage") is True,
    )


def _build_row(
    task: ReadTask,
    pricer: Pricer,
    msg_id: str,
    request_id: str | None,
    model: str | None,
    session_id: str | None,
    cwd: str | None,
    agent_id: str | None,
    counts: tuple[int | None, ...],
    cost_usd: Any,
    timestamp: Any,
    sidechain: bool,
    speed: Any,
    api_error: bool,
) -> _Fast | None:
    """The fast paths' common part: the row of the fields they read from a line."""
    inp, read, written, five, one, out = counts
    try:
        at = _fast_micros(timestamp)
        reported = None if cost_usd is None else _fast_pico(cost_usd)
    except _Unusual:
        return None
    computed = None
    if model == _SYNTHETIC:
        cost, status, version = 0, "computed", None
    else:
        if model is None:
            return None
        price = pricer.price_pico(
            model, PROVIDER, at, inp or 0, read or 0, written or 0, one or 0, out or 0
        )
        if price is None:
            return None
        if reported is None:
            cost, status, version = price
        else:
            cost, status, version, computed = reported, "reported", None, price[0]
    metadata = None
    if sidechain or speed is not None or computed is not None:
        meta: dict[str, Any] = {}
        if sidechain:
            meta["is_sidechain"] = True
        if speed is not None:
            meta["speed"] = speed
        if computed is not None:
            meta["computed_cost_pico"] = computed
        metadata = orjson.dumps(meta).decode()
    key = f"{msg_id}:{request_id}" if request_id else msg_id
    session_id = task.session_id or session_id
    # The columns before _FAST_SHARED; _fast_shared() gives the rest.
    row = (
        key,
        _run_of(session_id),
        model,
        msg_id,
        request_id,
        session_id,
        task.project or cwd,
        agent_id or _AGENT_IDS.get(task.agent),
        at,
        inp,
        read,
        written,
        five,
        one,
        out,
        cost,
        status,
        version,
        "error" if api_error else "ok",
        metadata,
    )
    total = (inp or 0) + (read or 0) + (written or 0) + (out or 0)
    return key, row, (total, reported or 0, speed is not None, sidechain)


_NO_COUNTS = (None,) * 6


def _fast_shared(task: ReadTask) -> tuple[Any, ...]:
    """The values of :data:`_FAST_SHARED` in every row :func:`_build_row` builds."""
    return (TRANSCRIPT, PROVIDER, None, None, None, "USD", "reported", task.recorded_at)


_TEXT = frozenset({str, type(None)})


class _Unusual(Exception):
    """A value the fast path leaves to the general one (which may raise or log for it)."""


def _fast_micros(value: object) -> int | None:
    """A transcript timestamp as epoch microseconds, as ``timestamp()`` reads it."""
    if value is None:
        return None
    if type(value) is not str:
        raise _Unusual
    try:
        at = datetime_to_micros(datetime.fromisoformat(value))  # naive means UTC
    except (ValueError, OverflowError):
        raise _Unusual from None
    if not _EARLIEST <= at < _LATEST:
        raise _Unusual  # the general path skips it, naming the line
    return at


_EARLIEST, _LATEST = datetime_to_micros(EARLIEST), datetime_to_micros(LATEST)


def _fast_pico(value: object) -> int:
    """A reported ``costUSD`` in pico-dollars, as ``money()`` and the pricer read it; strings,
    bools and amounts that are not finite or too large are left to the general path."""
    if type(value) is not int and type(value) is not float:
        raise _Unusual
    try:
        amount = Decimal(str(value))
        if not amount.is_finite() or abs(amount) >= MAX_USD:
            raise _Unusual  # the general path skips it, naming the line
        return money_to_pico(amount)
    except ArithmeticError:
        raise _Unusual from None


_USAGE = b'"usage"'


# -- typed decoding of the usual assistant line ------------------------------------------------
#
# msgspec decodes a line into these structs about twice as fast as orjson builds the whole
# object, because it makes no objects for the fields not named here (the content blocks). A
# line whose fields do not have these types fails to decode and takes the dict path, as
# does every line with a usage this path does not read (the dict path decides all of those).


class _Split(msgspec.Struct):
    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class _TUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_creation: _Split | None = None
    speed: Any = msgspec.UNSET
    output_tokens_details: Any = msgspec.UNSET


class _TMessage(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: _TUsage | None = None


class _TLine(msgspec.Struct):
    # Named as in the log.
    message: _TMessage | None = None
    requestId: str | None = None
    sessionId: str | None = None
    cwd: str | None = None
    agentId: str | None = None
    timestamp: str | None = None
    isSidechain: Any = None
    isApiErrorMessage: Any = None
    costUSD: Any = None


_decode_line = msgspec.json.Decoder(_TLine).decode
# msgspec recurses once per nesting level: a line nested deeper than Python's recursion limit
# (orjson reads up to 1024 levels) goes to the dict path.
_TYPED_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def _typed(raw: bytes) -> tuple[_TLine, _TMessage, _TUsage] | None:
    """A usage line decoded into the structs, or None when the dict path must read it."""
    if not raw.isascii():
        try:
            raw.decode()  # msgspec does not check the UTF-8 of fields it skips; orjson does
        except UnicodeDecodeError:
            return None
    try:
        line = _decode_line(raw)
    except _TYPED_ERRORS:
        return None
    msg = line.message
    if msg is None or not msg.id or msg.usage is None:
        return None
    return line, msg, msg.usage


def _typed_rank(line: _TLine, u: _TUsage) -> tuple[int, float, bool] | None:
    """:func:`_rank` of a decoded line."""
    split = u.cache_creation
    return _ranked(
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        None if split is None else split.ephemeral_5m_input_tokens,
        None if split is None else split.ephemeral_1h_input_tokens,
        split is not None,
        line.costUSD,
        u.speed is not msgspec.UNSET,
    )


def _typed_counts(u: _TUsage) -> tuple[int | None, ...] | None:
    """:func:`plain_anthropic_counts` of a decoded usage (its types already checked)."""
    if u.output_tokens_details is not msgspec.UNSET:
        return None
    split = u.cache_creation
    five = one = None
    if split is not None:
        five, one = split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens
    return plain_counts(
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        five,
        one,
    )


def _typed_row(
    line: _TLine, msg: _TMessage, u: _TUsage, task: ReadTask, pricer: Pricer
) -> _Fast | None:
    """:func:`_fast_row` of a decoded line."""
    counts = _typed_counts(u)
    if counts is None or counts == _NO_COUNTS:
        return None
    assert msg.id is not None
    speed = None if u.speed is msgspec.UNSET else u.speed
    return _build_row(
        task,
        pricer,
        msg.id,
        line.requestId,
        msg.model,
        line.sessionId,
        line.cwd,
        line.agentId,
        counts,
        line.costUSD,
        line.timestamp,
        line.isSidechain is True,
        speed,
        line.isApiErrorMessage is True,
    )


def _read_transcript(
    task: ReadTask, lines: list[bytes], result: FileResult, *, final: bool, typed_first: bool
) -> None:
    collector = _Collector(task, result)
    pricer = collector.pricer
    path, base = task.path, task.line_base

    def parse_typed(
        typed: tuple[_TLine, _TMessage, _TUsage], raw: bytes, line: int, copies: int
    ) -> None:
        try:
            read_typed(typed, raw, line, copies)
        except Exception as exc:  # whatever one line does, the others still go in
            _skip(result, path, line, "unreadable line", _failure(exc))

    def parse(obj: dict[str, Any], line: int, copies: int) -> None:
        try:
            read(obj, line, copies)
        except Exception as exc:
            _skip(result, path, line, "unreadable line", _failure(exc))

    def read_typed(
        typed: tuple[_TLine, _TMessage, _TUsage], raw: bytes, line: int, copies: int
    ) -> None:
        fast = _typed_row(*typed, task, pricer)
        if fast is None:
            try:
                obj = loads(raw)
            except decode_error as exc:  # no input known to pass msgspec and fail orjson
                _skip(result, path, line, "malformed JSON", f"malformed JSON ({exc})")
                return
            read(obj, line, copies)
            return
        if result.cwd is None:
            result.cwd = typed[0].cwd or None
        key, row, info = fast
        collector.keep(key, row, info, copies, line)

    def read(obj: dict[str, Any], line: int, copies: int) -> None:
        fast = _fast_row(obj, task, pricer)
        if fast is not None:
            if result.cwd is None:
                result.cwd = obj.get("cwd") or None
            key, row, info = fast
            collector.keep(key, row, info, copies, line)
            return
        try:
            call = transcript_call(obj, path=path, line=line)
        except _SHAPE_ERRORS as exc:  # a ParseError's detail: the path and line come once
            detail = exc.detail if isinstance(exc, ParseError) else str(exc)
            _skip(result, path, line, "invalid usage", detail)
            return
        if call is None:
            return
        if result.cwd is None and call.project:
            result.cwd = call.project
        # ccusage's derivation: session and project come from the path.
        call.session_id = task.session_id or call.session_id
        call.project = task.project or call.project
        collector.add(call, copies, line)

    def settle() -> None:
        # The group's best copy goes through parse().
        if best_typed is not None:
            parse_typed(best_typed, best_raw, best_line, seen)
        elif best is not None:
            parse(best, best_line, seen)

    # The current group: consecutive copies of one message (one line per content block);
    # only the copy that would win goes through parse(). Its best copy is a decoded line
    # (best_typed, with its bytes) or a dict (best).
    sig: tuple[Any, ...] | None = None
    best: dict[str, Any] | None = None
    best_typed: tuple[_TLine, _TMessage, _TUsage] | None = None
    best_raw = b""
    best_rank: tuple[int, float, bool] | None = None
    best_line = seen = 0
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for start, raw in iter_raw_lines(lines):
        # From the end: an assistant record holds its usage after the content blocks.
        if raw.rfind(_USAGE) < 0:
            continue
        line = base + start
        typed = _typed(raw) if typed_first else None
        rank = None if typed is None else _typed_rank(typed[0], typed[2])
        if rank is not None:
            assert typed is not None
            tline = typed[0]
            obj_sig = (typed[1].id, tline.requestId, tline.isSidechain is True)
            if obj_sig != sig:
                settle()
                sig, best, best_typed, best_rank, seen = obj_sig, None, None, None, 0
            seen += 1
            if best_rank is None or rank > best_rank:
                best, best_typed, best_raw, best_rank, best_line = None, typed, raw, rank, line
            continue
        try:
            objs: tuple[Any, ...] | list[Any] = (loads(raw),)
        except decode_error:
            try:
                objs = _decode(raw)
            except decode_error as exc:
                if not final:  # an unterminated last line is read again once it is complete
                    _skip(result, path, line, "malformed JSON", f"malformed JSON ({exc})")
                continue
        for obj in objs:
            if type(obj) is not dict:
                _skip(result, path, line, "not a JSON object", "not a JSON object")
                continue
            msg = obj.get("message")
            rank = msg_id = None
            if type(msg) is dict:
                msg_id, u = msg.get("id"), msg.get("usage")
                if msg_id and type(u) is dict:
                    rank = _rank(obj, u)
            if rank is None:
                settle()
                sig, best, best_typed, best_rank, seen = None, None, None, None, 0
                parse(obj, line, 1)
                continue
            obj_sig = (msg_id, obj.get("requestId"), obj.get("isSidechain") is True)
            if obj_sig != sig:
                settle()
                sig, best, best_typed, best_rank, seen = obj_sig, None, None, None, 0
            seen += 1
            if best_rank is None or rank > best_rank:
                best, best_typed, best_rank, best_line = obj, None, rank, line
    settle()
    collector.finish()


def _read_whole(task: ReadTask, data: bytes, result: FileResult) -> None:
    from llmledger import sources

    fmt = CODEX.log_source if task.agent == CODEX.name else None
    try:
        parsed = sources.parse(data, format=fmt, path=task.path)
    except _SHAPE_ERRORS as exc:
        # The message names the file and line once (a ParseError's own text holds both).
        error = exc if isinstance(exc, ParseError) else None
        line = error.line if error is not None and error.line else 1
        detail = str(exc) if error is None else error.detail
        _skip(result, task.path, line, "unreadable file", detail)
        return
    for skipped in parsed.skipped:  # bad lines: the rest of the file still goes in
        _skip(result, task.path, skipped.line or 1, skipped.reason, skipped.message)
    collector = _Collector(task, result)
    stem = Path(task.path).stem
    for call in parsed.calls:
        if result.cwd is None and call.project:
            result.cwd = call.project
        call.session_id = call.session_id or stem
        collector.add(call)
    collector.finish()


_NOT_REGULAR = (
    (stat.S_ISFIFO, "named pipe"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


def not_regular(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is not a regular file (a named pipe would
    block a read forever), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NOT_REGULAR if test(mode)), "special file")


class _NotRegular(Exception):
    pass


def _read_bytes(task: ReadTask) -> tuple[bytes, bytes]:
    """(the first bytes, the bytes from the offset) of a regular file; a file of another
    kind is not read, nor opened when it can be told before."""
    kind = not_regular(os.stat(task.path).st_mode)
    if kind is not None:
        raise _NotRegular(kind)
    # Non-blocking, in case it was replaced by a pipe since: opening one would wait for a
    # writer. (No effect on a regular file.)
    fd = os.open(task.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as fh:
        kind = not_regular(os.fstat(fd).st_mode)
        if kind is not None:
            raise _NotRegular(kind)
        head = fh.read(HEAD_BYTES) if task.offset else b""
        fh.seek(task.offset)
        return head, fh.read(max(0, task.size - task.offset))


def read_file(task: ReadTask, *, _typed: bool = True) -> FileResult:
    """Read ``task.path`` from its offset and return its rows; never raises.

    An unreadable file (or one that is not a regular file) comes back with ``failed`` set
    and nothing read; a line that fails is skipped and named, whatever went wrong. Lines are
    decoded into typed structs first unless ``_typed`` is off (the tests turn it off to
    compare the paths).
    """
    result = FileResult(task.path, offset=task.offset, lines=0)
    try:
        head, data = _read_bytes(task)
    except _NotRegular as exc:
        result.failed = f"{task.path}: not a regular file ({exc}), skipped"
        result.failed_reason = "not a regular file"
        return result
    except OSError as exc:
        result.failed = f"{task.path}: cannot read ({exc.strerror})"
        return result
    try:
        _read_data(task, head, data, result, typed=_typed)
    except Exception as exc:  # a file no check foresaw: the other files still go in
        failed = FileResult(task.path, offset=task.offset, lines=0)
        failed.failed = f"{task.path}: cannot read ({_failure(exc)})"
        return failed
    return result


def _read_data(
    task: ReadTask, head: bytes, data: bytes, result: FileResult, *, typed: bool
) -> None:
    if task.agent != "claude":
        result.offset = task.offset + len(data)
        result.lines = data.count(b"\n")
        result.head_sha256 = head_sha256((head or data)[:HEAD_BYTES])
        _read_whole(task, data, result)
        return
    lines = data.split(b"\n")
    tail = lines.pop()  # what follows the last newline (b"" when the file ends with one)
    cut = len(data) - len(tail)
    result.offset = task.offset + cut
    result.lines = len(lines)
    start = head if task.offset else data
    result.head_sha256 = head_sha256(start[: min(HEAD_BYTES, result.offset)])
    _read_transcript(task, lines, result, final=False, typed_first=typed)
    if tail.strip():
        # The file does not end in a newline yet: take the last record if it is complete,
        # without moving the offset past it (its key makes reading it again harmless).
        tail_task = ReadTask(**{**_task_dict(task), "line_base": task.line_base + result.lines})
        _read_transcript(tail_task, [tail], result, final=True, typed_first=typed)
    shared = _fast_shared(task)
    if result.general or not task.share_columns:
        # Rows built from Calls hold every column: so must the others.
        result.rows = [row if len(row) > _NARROW else row + shared for row in result.rows]
    else:
        result.shared = tuple(zip(_FAST_SHARED, shared, strict=True))


def _task_dict(task: ReadTask) -> dict[str, Any]:
    return {name: getattr(task, name) for name in ReadTask.__dataclass_fields__}


def now_micros() -> int:
    """The current time as epoch microseconds (the ``recorded_at`` of an import)."""
    return datetime_to_micros(datetime.now(UTC))
