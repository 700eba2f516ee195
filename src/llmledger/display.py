"""How numbers read on a screen: token counts and money, with "unknown" never shown as zero."""

from __future__ import annotations

from decimal import Decimal

from llmledger.totals import Totals

__all__ = ["format_cost", "format_money", "format_tokens"]


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
