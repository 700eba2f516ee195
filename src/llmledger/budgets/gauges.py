"""Budget gauges for ``GET /metrics``: limit, spent and forecast of each budget's current
window, labelled by budget name (a handful of series: budgets are few)."""

from __future__ import annotations

from datetime import UTC, datetime

from llmledger.budgets.book import list_budgets
from llmledger.budgets.status import budget_status
from llmledger.store import Repository

__all__ = ["GAUGES", "render_gauges"]

#: Family name -> help text.
GAUGES = {
    "llmledger_budget_limit_usd": "A budget's limit per window, in USD.",
    "llmledger_budget_spent_usd": "What a budget's scope spent in its current window, in USD "
    "(calls without a price are not in it).",
    "llmledger_budget_forecast_usd": "Spend at the end of a budget's current window at the "
    "current pace, in USD (no sample for a total budget: it has no end).",
}


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render_gauges(repo: Repository, *, now: datetime | None = None) -> bytes:
    """The three gauge families in the text format (0.0.4); nothing when there is no
    budget."""
    budgets = list_budgets(repo)
    if not budgets:
        return b""
    now = now or datetime.now(UTC)
    samples: dict[str, list[str]] = {name: [] for name in GAUGES}
    for budget in budgets:
        status = budget_status(repo, budget, now=now)
        label = f'{{budget="{_label(budget.name)}"}}'
        samples["llmledger_budget_limit_usd"].append(f"{label} {float(budget.limit_usd)!r}")
        samples["llmledger_budget_spent_usd"].append(f"{label} {float(status.spent_usd)!r}")
        if status.forecast_usd is not None:
            forecast = float(status.forecast_usd)
            samples["llmledger_budget_forecast_usd"].append(f"{label} {forecast!r}")
    out = []
    for name, doc in GAUGES.items():
        out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
        out.extend(f"{name}{sample}\n" for sample in samples[name])
    return "".join(out).encode()
