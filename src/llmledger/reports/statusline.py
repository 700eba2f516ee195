"""The status line: what Claude Code's ``statusLine`` hook sends, the figures shown for it, and
the one line they make.

Claude Code runs the hook command after each assistant message with a JSON object on stdin
(``session_id``, ``transcript_path``, ``model.id`` / ``model.display_name``, ``workspace``,
``cost.total_cost_usd`` and, in recent versions, ``context_window`` with its size and the
last turn's ``current_usage``); :class:`HookInput` keeps the fields we use and ignores the rest.
:func:`status_figures` reads the ledger (through the
:class:`~llmledger.store.sqlite_reader.Reader` protocol: no SQLAlchemy on a current SQLite
ledger) and :func:`render` writes the line. The import of the transcript's new lines is the
surface's job (``cli/statusline.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

import orjson

from llmledger.agents import SOURCE_OF
from llmledger.display import plain_text
from llmledger.reports.blocks import Block, active_block
from llmledger.reports.filters import Filters, calls_where
from llmledger.reports.sums import calls_sums, sums_to_totals
from llmledger.store.sqlite_reader import Reader
from llmledger.totals import Totals
from llmledger.values import datetime_to_micros

__all__ = [
    "SEGMENTS",
    "HookInput",
    "StatusFigures",
    "context_window_of",
    "last_turn_context",
    "parse_segments",
    "render",
    "status_figures",
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


@dataclass(frozen=True, slots=True)
class HookInput:
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
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
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
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the cut first line, or a line being written
        if not isinstance(doc, dict) or doc.get("isSidechain") is True:
            continue
        tokens = _prompt_tokens(_dig(doc, "message", "usage"))
        if doc.get("type") == "assistant" and tokens is not None:
            return tokens, _text(_dig(doc, "message", "model"))
    return None, None


def _windows_cache() -> str:
    import platformdirs

    folder = platformdirs.user_cache_dir("llmledger", appauthor=False)
    return os.path.join(folder, "context-windows.json")


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
            cached = orjson.loads(fh.read())
        if isinstance(cached, dict) and cached.get("llmledger") == __version__:
            known = cached.get("models") or {}
    except (OSError, orjson.JSONDecodeError):
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
        with open(temporary, "wb") as fh:
            fh.write(orjson.dumps({"llmledger": __version__, "models": known}))
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


@dataclass(slots=True)
class StatusFigures:
    """What the line shows: the model, the session's and today's totals, the active block
    (None when none), and the last turn's context against the model's window."""

    now: datetime
    model: str | None
    session: Totals
    today: Totals
    block: Block | None
    context_tokens: int | None
    context_window: int | None


def _totals(reader: Reader, cost: str, extra: str, params: Sequence[Any]) -> Totals:
    where, base = calls_where(Filters(), None, None)
    clause = f"{where} AND {extra}" if where else f"WHERE {extra}"
    sql = f"SELECT {', '.join(calls_sums(reader, cost))} FROM calls {clause}"
    [row] = reader.fetch(sql, [*base, *params])
    return sums_to_totals(row)


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
    (default: the local zone). Only what the segments need is read.

    The block is Claude Code's: its 5-hour window is Anthropic's, so only the calls of Claude
    Code transcripts count in it. Today counts every call in the ledger. The context is the
    last turn's prompt tokens (``hook.context_tokens``, else the transcript's last turn) over
    the window Claude Code reports, else the model's in genai-prices (``window_of``)."""
    now = now or datetime.now(UTC)
    wanted = set(segments)
    empty = Totals()
    session = empty
    if "session" in wanted and session_id is not None:
        session = _totals(reader, cost, "session_id = ?", [session_id])
    today = empty
    if "today" in wanted:
        local = now.astimezone(tz) if tz is not None else now.astimezone()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        bounds = [datetime_to_micros(midnight), datetime_to_micros(midnight + timedelta(days=1))]
        today = _totals(reader, cost, "started_at >= ? AND started_at < ?", bounds)
    block = None
    if wanted & {"block", "burn"}:
        claude = Filters(sources=(SOURCE_OF["claude"],))
        block = active_block(reader, filters=claude, cost=cost, now=now)
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


def _money(totals: Totals) -> str:
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


def _left(block: Block, now: datetime) -> str:
    minutes = max(0, int((block.end - now).total_seconds() // 60))
    return f"{minutes // 60}h {minutes % 60:02d}m left"


def render(figures: StatusFigures, segments: Sequence[str] = SEGMENTS, *, color: bool) -> str:
    """The status line: the ``segments`` in order, joined by `` · ``, with ANSI colors when
    ``color``. Names from the input are shown with their control characters escaped."""
    parts: list[str] = []
    for name in segments:
        if name == "model":
            parts.append(_paint(plain_text(figures.model or "unknown model"), "cyan", color))
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
            rate = figures.block.burn_rate() if figures.block is not None else None
            if rate is not None:
                per_hour = rate["cost_per_hour"]
                hot = "red" if per_hour >= 20 else "yellow" if per_hour >= 5 else "green"
                parts.append(_paint(f"${per_hour:,.2f}/h", hot, color))
        elif name == "context":
            parts.append(_context(figures, color))
    return _SEP.join(parts)


def _context(figures: StatusFigures, color: bool) -> str:
    tokens, window = figures.context_tokens, figures.context_window
    if tokens is None:
        return "ctx -"  # no turn yet in this session
    if window is None:
        return f"ctx {tokens:,} tok (window unknown)"
    percent = tokens / window * 100
    hue = "red" if percent >= 80 else "yellow" if percent >= 50 else "green"
    return _paint(f"ctx {percent:.0f}%", hue, color)
