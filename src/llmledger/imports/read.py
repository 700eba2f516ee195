"""Reading one agent log file for an import (runs in the worker processes).

A Claude Code transcript is read from a byte offset up to its last complete newline; every
record holding the bytes ``"usage"`` is decoded (compact or pretty-printed JSON) and handed to
the sources' ``transcript_call``. Copies of a message inside the file are settled here (larger
token total wins, as ccusage v20); copies across files are settled by the importer. Each kept
call is priced and turned into a ready-to-write row of the ``calls`` table (``rows``), filed
under its session's run. A line of the usual shape goes straight to its row without building a
Call (``fastpath``). Codex rollouts and Gemini CLI chats are parsed whole by ``sources``.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from llmledger.agents import CODEX
from llmledger.call import Call
from llmledger.errors import LedgerError, ParseError
from llmledger.imports.fastpath import (
    better_copy,
    decode_typed,
    fast_row,
    fast_shared,
    line_rank,
    typed_rank,
    typed_row,
)
from llmledger.imports.logfiles import file_subagent, forget_subagent_types, subagent_type
from llmledger.imports.plan import HEAD_BYTES, head_sha256
from llmledger.imports.rows import (
    AGENT_IDS,
    NARROW,
    SHARED_COLUMNS,
    SYNTHETIC,
    run_of,
)
from llmledger.sources._common import iter_raw_lines
from llmledger.sources.claude_transcript import transcript_call
from llmledger.values import datetime_to_micros, money_to_pico

if TYPE_CHECKING:
    from llmledger.imports.fastpath import Typed
    from llmledger.pricing import Pricer

__all__ = ["FileResult", "ReadTask", "not_regular", "now_micros", "read_file", "set_pricer"]

_MAX_ERRORS = 5
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
    if call.model == SYNTHETIC:
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
    subagent, kind = call.subagent, call.subagent_type
    if task.agent == "claude":  # as the fast paths: the file names the subagent otherwise
        subagent = subagent or file_subagent(task.path)
        if subagent is not None and kind is None:
            kind = subagent_type(task.path, subagent)
    meta = dict(call.metadata)
    if computed is not None:
        meta["computed_cost_pico"] = computed
    u = call.usage
    return (
        call.dedupe_key,
        run_of(call.session_id),
        call.model,
        call.message_id,
        call.request_id,
        call.session_id,
        call.project,
        call.agent_id or AGENT_IDS.get(task.agent),
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
        subagent,
        kind,
        call.branch,
        call.cwd,
        # SHARED_COLUMNS:
        call.source,
        call.provider,
        _micros(call.finished_at),
        call.duration_ms,
        u.reasoning_tokens,
        "USD",
        call.token_provenance,
        task.recorded_at,
        call.host,
    )


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
        if better_copy(info, self.infos[slot]):
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


_USAGE = b'"usage"'


def _read_transcript(
    task: ReadTask, lines: list[bytes], result: FileResult, *, final: bool, typed_first: bool
) -> None:
    collector = _Collector(task, result)
    pricer = collector.pricer
    path, base = task.path, task.line_base

    def parse_typed(typed: Typed, raw: bytes, line: int, copies: int) -> None:
        try:
            read_typed(typed, raw, line, copies)
        except Exception as exc:  # whatever one line does, the others still go in
            _skip(result, path, line, "unreadable line", _failure(exc))

    def parse(obj: dict[str, Any], line: int, copies: int) -> None:
        try:
            read(obj, line, copies)
        except Exception as exc:
            _skip(result, path, line, "unreadable line", _failure(exc))

    def read_typed(typed: Typed, raw: bytes, line: int, copies: int) -> None:
        fast = typed_row(*typed, task, pricer)
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
        fast = fast_row(obj, task, pricer)
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
    best_typed: Typed | None = None
    best_raw = b""
    best_rank: tuple[int, float, bool] | None = None
    best_line = seen = 0
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for start, raw in iter_raw_lines(lines):
        # From the end: an assistant record holds its usage after the content blocks.
        if raw.rfind(_USAGE) < 0:
            continue
        line = base + start
        typed = decode_typed(raw) if typed_first else None
        rank = None if typed is None else typed_rank(typed[0], typed[2])
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
                    rank = line_rank(obj, u)
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
    forget_subagent_types()
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
    shared = fast_shared(task)
    if result.general or not task.share_columns:
        # Rows built from Calls hold every column: so must the others.
        result.rows = [row if len(row) > NARROW else row + shared for row in result.rows]
    else:
        result.shared = tuple(zip(SHARED_COLUMNS, shared, strict=True))


def _task_dict(task: ReadTask) -> dict[str, Any]:
    return {name: getattr(task, name) for name in ReadTask.__dataclass_fields__}


def now_micros() -> int:
    """The current time as epoch microseconds (the ``recorded_at`` of an import)."""
    return datetime_to_micros(datetime.now(UTC))
