"""The status line: what Claude Code's ``statusLine`` hook sends, the figures shown for it, and
the one line they make.

Claude Code runs the hook command after each assistant message with a JSON object on stdin
(``session_id``, ``transcript_path``, ``model.id`` / ``model.display_name``, ``workspace``,
``cost.total_cost_usd`` and, in recent versions, ``context_window`` with its size and the
last turn's ``current_usage``); :class:`HookInput` keeps the fields we use and ignores the rest.
:func:`status_figures` reads the ledger (through the
:class:`~llmledger.store.sqlite_reader.Reader` protocol: no SQLAlchemy on a current SQLite
ledger) and :func:`render` writes the line. The import of the transcript's new lines is the
surface's job (``cli/status_hook.py``).

The line runs after every message, and Python's imports are most of its time: this module
loads the standard library's ``json``, ``decimal`` and ``datetime`` and nothing of the
reports' (their dataclasses and the price data cost more than the queries). What it shares
with them (the block rules, the cost sums) is kept equal by tests/test_statusline.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, NamedTuple

from llmledger.store.sqlite_reader import Reader
from llmledger.values import datetime_to_micros, micros_to_datetime, money_from_pico

__all__ = [
    "SEGMENTS",
    "HookInput",
    "Spent",
    "StatusBlock",
    "StatusFigures",
    "context_window_of",
    "last_turn_context",
    "parse_segments",
    "render",
    "status_figures",
    "user_cache_dir",
]

#: The segments of the line, in their default order.
SEGMENTS: tuple[str, ...] = ("model", "session", "today", "block", "burn", "context")
#: How much of a transcript's end is read to find the last turn's usage.
TAIL_BYTES = 256 * 1024
_SEP = " · "


def parse_segments(text: str) -> tuple[str, ...]:
    """``--segments`` read: names from :data:`SEGMENTS`, comma-separated, in the order shown.
    :class:`ValueError` names an unknown one."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SEGMENTS]
    if unknown or not names:
        raise ValueError(f"unknown segment {unknown[0]!r}" if unknown else "no segment given")
    return tuple(dict.fromkeys(names))


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _count(value: Any) -> int | None:
    # bool is an int: a flag is not a count.
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _prompt_tokens(usage: Any) -> int | None:
    """input + cache read + cache write of an Anthropic-shaped usage object (None when it has
    none of them)."""
    parts = [
        _count(_dig(usage, key))
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    ]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


class HookInput(NamedTuple):
    """The fields of Claude Code's status-line JSON that the line uses (each None when absent
    or of the wrong type)."""

    session_id: str | None = None
    transcript_path: str | None = None
    model_id: str | None = None
    model_name: str | None = None
    cwd: str | None = None
    #: Claude Code's own estimate of the session's cost (``cost.total_cost_usd``).
    reported_cost: Decimal | None = None
    #: ``context_window.context_window_size``: the model's window as Claude Code knows it.
    window_size: int | None = None
    #: The last turn's prompt tokens from ``context_window.current_usage``.
    context_tokens: int | None = None

    @classmethod
    def parse(cls, data: bytes) -> HookInput:
        """Read the hook's JSON; :class:`ValueError` when it is not a JSON object."""
        try:
            doc = json.loads(data)
        except ValueError as exc:  # not JSON, or not UTF-8
            raise ValueError(f"invalid JSON on stdin: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("the JSON on stdin is not an object")
        cost = _dig(doc, "cost", "total_cost_usd")
        reported = (
            Decimal(str(cost))
            if isinstance(cost, int | float) and not isinstance(cost, bool)
            else None
        )
        return cls(
            session_id=_text(doc.get("session_id")),
            transcript_path=_text(doc.get("transcript_path")),
            model_id=_text(_dig(doc, "model", "id")),
            model_name=_text(_dig(doc, "model", "display_name")),
            cwd=_text(_dig(doc, "workspace", "current_dir")) or _text(doc.get("cwd")),
            reported_cost=reported if reported is not None and reported.is_finite() else None,
            window_size=_count(_dig(doc, "context_window", "context_window_size")) or None,
            context_tokens=_prompt_tokens(_dig(doc, "context_window", "current_usage")),
        )


def last_turn_context(path: str, tail: int = TAIL_BYTES) -> tuple[int | None, str | None]:
    """The prompt tokens (input + cache read + cache write) and model of the last main-thread
    assistant turn in the transcript at ``path``, read from its last ``tail`` bytes; (None,
    None) when there is none there. Sub-agent (sidechain) turns are skipped: they have their
    own context."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - tail))
        data = fh.read()
    for line in reversed(data.split(b"\n")):
        if b'"usage"' not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue  # the cut first line, or a line being written
        if not isinstance(doc, dict) or doc.get("isSidechain") is True:
            continue
        tokens = _prompt_tokens(_dig(doc, "message", "usage"))
        if doc.get("type") == "assistant" and tokens is not None:
            return tokens, _text(_dig(doc, "message", "model"))
    return None, None


def user_cache_dir() -> str:
    """platformdirs' ``user_cache_dir("llmledger")``; on Linux without loading platformdirs
    (its import, with tempfile and shutil, costs the line ~10 ms): ``$XDG_CACHE_HOME``, else
    ``~/.cache``, then ``llmledger`` (a test keeps the two equal)."""
    if sys.platform == "linux":
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
        return os.path.join(base, "llmledger")
    import platformdirs

    return platformdirs.user_cache_dir("llmledger", appauthor=False)


def _windows_cache() -> str:
    return os.path.join(user_cache_dir(), "context-windows.json")


def context_window_of(model: str, cache_path: str | None = None) -> int | None:
    """The context window of ``model`` in tokens, from genai-prices' model data (its
    ``context_window``); None when it does not know the model.

    Importing genai-prices takes longer than the whole status line may, so each answer (an
    unknown model too) is kept in a small JSON file in the user's cache directory, written
    again when llmledger's version changes."""
    from llmledger import __version__

    path = cache_path or _windows_cache()
    known: dict[str, Any] = {}
    try:
        with open(path, "rb") as fh:
            cached = json.loads(fh.read())
        if isinstance(cached, dict) and cached.get("llmledger") == __version__:
            known = cached.get("models") or {}
    except (OSError, ValueError):
        pass
    if model in known:
        value = known[model]
        return value if isinstance(value, int) else None
    window = _genai_window(model)
    known[model] = window
    try:
        from llmledger._private import make_private_dirs

        make_private_dirs(os.path.dirname(path))
        temporary = f"{path}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as fh:
            json.dump({"llmledger": __version__, "models": known}, fh, separators=(",", ":"))
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only cache directory costs a lookup next time, nothing more
    return window


def _genai_window(model: str) -> int | None:
    from genai_prices.data_snapshot import get_snapshot

    name = model.strip().lower()
    for candidate in (name, name.split("[", 1)[0]):
        try:
            _, info = get_snapshot().find_provider_model(candidate, None, None, None)
        except LookupError:
            continue
        window = getattr(info, "context_window", None)
        return window if isinstance(window, int) and window > 0 else None
    return None


class Spent(NamedTuple):
    """What a set of calls cost, as the line shows it: the known costs' sum (None when no call
    had one), the calls without a price, and the calls."""

    cost_usd: Decimal | None
    unpriced_calls: int
    calls: int


class StatusBlock(NamedTuple):
    """The active 5-hour block, as the line shows it (the blocks report's
    :class:`~llmledger.reports.blocks.Block` has the rest): when it started and ends, its
    first and last call, and what its calls cost."""

    start: datetime
    end: datetime
    first_at: datetime
    last_at: datetime
    totals: Spent

    @property
    def is_active(self) -> bool:
        """Always: the line shows no other block."""
        return True

    def cost_per_hour(self) -> float | None:
        """USD per hour between the first and the last call (None when they are the same
        moment), as :meth:`~llmledger.reports.blocks.Block.burn_rate` has it."""
        minutes = (self.last_at - self.first_at).total_seconds() / 60
        if minutes <= 0:
            return None
        return float(self.totals.cost_usd or 0) / minutes * 60


class StatusFigures(NamedTuple):
    """What the line shows: the model, the session's and today's costs, the active block
    (None when none), and the last turn's context against the model's window."""

    now: datetime
    model: str | None
    session: Spent
    today: Spent
    block: StatusBlock | None
    context_tokens: int | None
    context_window: int | None


_NOTHING = Spent(None, 0, 0)
_HOUR = 3_600_000_000  # µs
_BLOCK_HOURS = 5
#: The calls the block counts: Claude Code's (its window is Anthropic's); a test keeps it
#: equal to agents.SOURCE_OF["claude"] (agents.py loads dataclasses).
_CLAUDE_SOURCE = "claude_code_transcript"


def _money_sql(reader: Reader, cost: str) -> str:
    # "auto" (the reports' default) is the stored cost; the other modes' SQL is the roll-up's.
    if cost == "auto":
        return "cost_usd"
    from llmledger.store.rollup import cost_expressions

    return cost_expressions("calls", reader.dialect)[cost]


def _spent(reader: Reader, money: str, where: str, params: Sequence[Any]) -> Spent:
    """The sums :func:`llmledger.reports.sums.calls_sums` reads, the ones the line shows."""
    sql = (
        f"SELECT SUM({money}), SUM(CASE WHEN ({money}) IS NULL THEN 1 ELSE 0 END), COUNT(*) "
        f"FROM calls WHERE {where}"
    )
    [(cost, unpriced, count)] = reader.fetch(sql, params)
    return Spent(money_from_pico(cost), int(unpriced or 0), int(count))


def _active_block(reader: Reader, money: str, now: datetime) -> StatusBlock | None:
    """The active block of Claude Code's calls at ``now``, or None: what
    :func:`llmledger.reports.blocks.active_block` finds (a test keeps them equal), with
    three indexed queries and no objects per call. The call times are walked back from the
    latest to the first idle stretch longer than the block (the call after one always starts a
    block), then grouped forward as the blocks report groups them; only the last group's
    sums are read."""
    span = _BLOCK_HOURS * _HOUR
    mine = "source = ? AND started_at IS NOT NULL"
    [(latest,)] = reader.fetch(f"SELECT MAX(started_at) FROM calls WHERE {mine}", [_CLAUDE_SOURCE])
    at_now = datetime_to_micros(now)
    if latest is None or at_now - latest >= span:
        return None
    start, page = latest, 1000
    while True:
        times = reader.fetch(
            f"SELECT started_at FROM calls WHERE {mine} AND started_at < ? "
            f"ORDER BY started_at DESC LIMIT {page}",
            [_CLAUDE_SOURCE, start],
        )
        for (at,) in times:
            if start - at > span:
                break
            start = at
        else:
            if len(times) == page:
                continue
        break
    block: tuple[int, int, int] | None = None  # its start, first call, last call (µs)
    for (at,) in reader.fetch(
        f"SELECT started_at FROM calls WHERE {mine} AND started_at >= ? ORDER BY started_at",
        [_CLAUDE_SOURCE, start],
    ):
        if block is None or at - block[0] > span or at - block[2] > span:
            block = (at - at % _HOUR, at, at)
        else:
            block = (block[0], block[1], at)
    if block is None:
        return None
    begin, first, last = block
    if not (at_now - last < span and at_now < begin + span):
        return None
    within = f"{mine} AND started_at >= ? AND started_at <= ?"
    totals = _spent(reader, money, within, [_CLAUDE_SOURCE, first, last])
    return StatusBlock(
        _datetime(begin), _datetime(begin + span), _datetime(first), _datetime(last), totals
    )


def _datetime(micros: int) -> datetime:
    value = micros_to_datetime(micros)
    assert value is not None
    return value


def status_figures(
    reader: Reader,
    hook: HookInput,
    *,
    session_id: str | None,
    segments: Sequence[str] = SEGMENTS,
    now: datetime | None = None,
    tz: tzinfo | None = None,
    cost: str = "auto",
    window_of: Any = context_window_of,
) -> StatusFigures:
    """The figures of ``segments`` for the session ``session_id`` (as the importer filed its
    transcript), as of ``now`` (default: the current time); today is the local day in ``tz``
    (default: the local zone). Only what the segments need is read, with a few indexed
    queries and the standard library (the reports' modules load more than the line's budget).

    The block is Claude Code's: its 5-hour window is Anthropic's, so only the calls of Claude
    Code transcripts count in it. Today counts every call in the ledger. The context is the
    last turn's prompt tokens (``hook.context_tokens``, else the transcript's last turn) over
    the window Claude Code reports, else the model's in genai-prices (``window_of``)."""
    now = now or datetime.now(UTC)
    wanted = set(segments)
    money = _money_sql(reader, cost)
    session = _NOTHING
    if "session" in wanted and session_id is not None:
        session = _spent(reader, money, "session_id = ?", [session_id])
    today = _NOTHING
    if "today" in wanted:
        local = now.astimezone(tz) if tz is not None else now.astimezone()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        bounds = [datetime_to_micros(midnight), datetime_to_micros(midnight + timedelta(days=1))]
        today = _spent(reader, money, "started_at >= ? AND started_at < ?", bounds)
    block = _active_block(reader, money, now) if wanted & {"block", "burn"} else None
    tokens, model = hook.context_tokens, hook.model_id
    missing = ("context" in wanted and tokens is None) or model is None
    if missing and hook.transcript_path is not None:
        last_tokens, last_model = last_turn_context(hook.transcript_path)
        tokens = tokens if tokens is not None else last_tokens
        model = model or last_model
    window = hook.window_size
    if "context" in wanted and window is None and model is not None:
        window = window_of(model)
    return StatusFigures(
        now=now,
        model=hook.model_name or model,
        session=session,
        today=today,
        block=block,
        context_tokens=tokens,
        context_window=window,
    )


# -- the line ------------------------------------------------------------------------------------

_RESET = "\x1b[0m"
_COLORS = {"cyan": "\x1b[36m", "green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[31m"}
_DIM = "\x1b[2m"


def _paint(text: str, color: str | None, enabled: bool) -> str:
    return f"{_COLORS[color]}{text}{_RESET}" if enabled and color else text


def _money(totals: Spent) -> str:
    """A cost for the line: ``$0.00`` for no calls at all (nothing was spent), ``$1.20 +3
    unpriced``, ``unpriced (3)`` when no call had a price: never $0 for an unknown cost."""
    if totals.calls == 0:
        return "$0.00"
    if totals.cost_usd is None:
        return f"unpriced ({totals.unpriced_calls})" if totals.unpriced_calls else "$?"
    amount = totals.cost_usd
    # Cents, but a session's first fractions of a cent are shown rather than as $0.00.
    text = f"${amount:,.2f}" if amount >= Decimal("0.01") or amount == 0 else f"${amount:.4f}"
    return f"{text} +{totals.unpriced_calls} unpriced" if totals.unpriced_calls else text


def _left(block: StatusBlock, now: datetime) -> str:
    minutes = max(0, int((block.end - now).total_seconds() // 60))
    return f"{minutes // 60}h {minutes % 60:02d}m left"


def render(figures: StatusFigures, segments: Sequence[str] = SEGMENTS, *, color: bool) -> str:
    """The status line: the ``segments`` in order, joined by `` · ``, with ANSI colors when
    ``color``. Names from the input are shown with their control characters escaped."""
    parts: list[str] = []
    for name in segments:
        if name == "model":
            parts.append(_paint(_plain(figures.model or "unknown model"), "cyan", color))
        elif name == "session":
            parts.append(f"session {_money(figures.session)}")
        elif name == "today":
            parts.append(f"today {_money(figures.today)}")
        elif name == "block":
            block = figures.block
            if block is None:
                parts.append(_paint("no active block", None, color))
            else:
                parts.append(f"block {_money(block.totals)} ({_left(block, figures.now)})")
        elif name == "burn":
            per_hour = figures.block.cost_per_hour() if figures.block is not None else None
            if per_hour is not None:
                hot = "red" if per_hour >= 20 else "yellow" if per_hour >= 5 else "green"
                parts.append(_paint(f"${per_hour:,.2f}/h", hot, color))
        elif name == "context":
            parts.append(_context(figures, color))
    return _SEP.join(parts)


def _plain(name: str) -> str:
    if name.isprintable():  # the common case; llmledger.display loads the totals' dataclasses
        return name
    from llmledger.display import plain_text

    return plain_text(name)


def _context(figures: StatusFigures, color: bool) -> str:
    tokens, window = figures.context_tokens, figures.context_window
    if tokens is None:
        return "ctx -"  # no turn yet in this session
    if window is None:
        return f"ctx {tokens:,} tok (window unknown)"
    percent = tokens / window * 100
    hue = "red" if percent >= 80 else "yellow" if percent >= 50 else "green"
    return _paint(f"ctx {percent:.0f}%", hue, color)
