"""The fast paths of a transcript read: a usual assistant line (a message id, plain counts, a
priced model) goes straight to its ``calls`` row, without building a Call, Usage or Decimal.

Decoded by msgspec into typed structs (:func:`decode_typed`, :func:`typed_row`), or, when its
fields have other types, by orjson into a dict (:func:`fast_row`). Anything else, or anything
that could fail or log, returns None and takes the general path through the sources' parser;
tests/test_import_read.py holds the three paths to the same results. Also here: the copy
ranking read straight from a line (:func:`line_rank`, :func:`typed_rank`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from llmledger.imports.logfiles import file_subagent, subagent_type
from llmledger.imports.rows import AGENT_IDS, SYNTHETIC, run_of
from llmledger.sources.anthropic import PROVIDER, plain_anthropic_counts, plain_counts
from llmledger.sources.claude_transcript import BRANCH_MAX, NAME_MAX
from llmledger.sources.claude_transcript import FORMAT as TRANSCRIPT
from llmledger.values import EARLIEST, LATEST, MAX_USD, datetime_to_micros, money_to_pico

if TYPE_CHECKING:
    from llmledger.imports.read import ReadTask
    from llmledger.pricing import Pricer

__all__ = [
    "Fast",
    "Typed",
    "better_copy",
    "decode_typed",
    "fast_row",
    "fast_shared",
    "line_rank",
    "typed_rank",
    "typed_row",
]


def better_copy(new: tuple[int, int, bool, bool], old: tuple[int, int, bool, bool]) -> bool:
    """Whether copy ``new`` of a call beats the kept ``old``, by their ranks (token total,
    logged cost, speed, sidechain).

    ccusage v20's rule: the larger token total, then the higher cost, then the copy that carries
    speed.
    """
    if new[0] != old[0]:
        return new[0] > old[0]
    if new[1] != old[1]:
        return new[1] > old[1]
    return new[2] and not old[2]


def line_rank(obj: dict[str, Any], u: dict[str, Any]) -> tuple[int, float, bool] | None:
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


Fast = tuple[str, tuple[Any, ...], tuple[int, int, bool, bool]]


def fast_row(obj: dict[str, Any], task: ReadTask, pricer: Pricer) -> Fast | None:
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
        obj.get("gitBranch"),
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
    branch: Any,
) -> Fast | None:
    """The fast paths' common part: the row of the fields they read from a line. The
    line's ``agentId`` names its subagent (else an ``agent-<id>.jsonl`` file's name does);
    the agent id is the agent's own (claude-code)."""
    inp, read, written, five, one, out = counts
    try:
        at = _fast_micros(timestamp)
        reported = None if cost_usd is None else _fast_pico(cost_usd)
    except _Unusual:
        return None
    computed = None
    if model == SYNTHETIC:
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
    subagent = agent_id[:NAME_MAX] if agent_id else file_subagent(task.path)
    # The columns before SHARED_COLUMNS; fast_shared() gives the rest.
    row = (
        key,
        run_of(session_id),
        model,
        msg_id,
        request_id,
        session_id,
        task.project or cwd,
        AGENT_IDS.get(task.agent),
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
        subagent,
        None if subagent is None else subagent_type(task.path, subagent),
        branch[:BRANCH_MAX] if type(branch) is str and branch else None,
        cwd or None,
    )
    total = (inp or 0) + (read or 0) + (written or 0) + (out or 0)
    return key, row, (total, reported or 0, speed is not None, sidechain)


_NO_COUNTS = (None,) * 6


def fast_shared(task: ReadTask) -> tuple[Any, ...]:
    """The values of :data:`SHARED_COLUMNS` in every row :func:`_build_row` builds."""
    return (TRANSCRIPT, PROVIDER, None, None, None, "USD", "reported", task.recorded_at, None)


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
    gitBranch: Any = None
    timestamp: str | None = None
    isSidechain: Any = None
    isApiErrorMessage: Any = None
    costUSD: Any = None


#: A decoded line: the line, its message, the message's usage.
Typed = tuple[_TLine, _TMessage, _TUsage]
_decode_line = msgspec.json.Decoder(_TLine).decode
# msgspec recurses once per nesting level: a line nested deeper than Python's recursion limit
# (orjson reads up to 1024 levels) goes to the dict path.
_TYPED_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def decode_typed(raw: bytes) -> Typed | None:
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


def typed_rank(line: _TLine, u: _TUsage) -> tuple[int, float, bool] | None:
    """:func:`line_rank` of a decoded line."""
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


def typed_row(
    line: _TLine, msg: _TMessage, u: _TUsage, task: ReadTask, pricer: Pricer
) -> Fast | None:
    """:func:`fast_row` of a decoded line."""
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
        line.gitBranch,
    )
