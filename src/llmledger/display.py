"""How numbers and names read on a screen: token counts and money, with "unknown" never shown as
zero, and names shown as written (no markup, no terminal control sequences)."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from llmledger.totals import Totals

__all__ = ["format_cost", "format_money", "format_tokens", "plain_text", "safe_text"]

# Bidirectional overrides and isolates reorder what follows them on screen; line and paragraph
# separators break a table row like a newline does.
_INVISIBLE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# The pattern rich.markup.escape uses for what Rich would read as a tag.
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


def _visible(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def plain_text(value: object) -> str:
    """``value`` as text that cannot drive a terminal: every control character (C0, DEL,
    C1), bidirectional override and line separator is shown as a Python-style escape
    (``\\x1b``, ``\\n``, ``\\u202e``); ``-`` for None. For lines printed without Rich markup."""
    if value is None:
        return "-"
    text = str(value)
    if text.isprintable():  # the common case: nothing to replace (fast)
        return text
    return "".join(
        _visible(c) if c in _INVISIBLE or unicodedata.category(c) == "Cc" else c for c in text
    )


def safe_text(value: object) -> str:
    """``value`` (a name, a path: anything the user or a log chose) ready for a Rich table cell
    or ``console.print``: :func:`plain_text`, with Rich markup escaped so that ``[/x]`` or
    ``[bold]`` is shown as written and never parsed.

    Unlike ``rich.markup.escape`` a trailing backslash is kept single (it shows as one in a
    cell); so do not put a markup tag right after the result: build such lines with
    ``rich.text.Text`` and :func:`plain_text` instead."""
    # Rich reads "[" followed by a letter, "#", "/" or "@" up to "]" as a tag; backslashes
    # right before it escape it (two print as one).
    return _TAG.sub(lambda m: f"{m[1]}{m[1]}\\{m[2]}", plain_text(value))


def format_tokens(value: int | None) -> str:
    """A count with thousands separators; ``-`` when it was never reported."""
    return "-" if value is None else f"{value:,}"


def format_money(amount: Decimal | None) -> str:
    """``$0.0792`` below a dollar, ``$1,234.56`` above; ``-`` when unknown."""
    if amount is None:
        return "-"
    return f"${amount:,.2f}" if amount >= Decimal(1) else f"${amount:.4f}"


def format_cost(totals: Totals) -> str:
    """The known cost and how many calls have none: ``$1.20 + 3 unpriced``, ``unpriced (3)``."""
    if totals.cost_usd is None:
        return f"unpriced ({totals.unpriced_calls})" if totals.unpriced_calls else "-"
    text = format_money(totals.cost_usd)
    return f"{text} + {totals.unpriced_calls} unpriced" if totals.unpriced_calls else text
