"""Budgets and a status history for the dashboard's budgets and forecast pages: a daily budget
with known spend, an unpriced call and a reservation in its scope, a small total budget already
over, and the status history of docs/forecast.md's worked example (ETA known by hand)."""

from __future__ import annotations

from decimal import Decimal

from llmledger import Ledger, Usage
from llmledger.budgets import CallContext, make_budget, set_budget
from llmledger.budgets.reserve import reserve  # the function (the package's name can be the module)
from llmledger.store import open_repository
from llmledger.timespec import parse_instant

#: docs/forecast.md's worked example: velocities work 4 h, review 1 h, qa 0.5 h (from task H);
#: at NOW, A is in work for 1 h, B in review for 2 h, C not started -> ETA NOW + 8.5 h.
WORKED = [
    ("H", "in_progress", "2026-12-01T00:00Z"),
    ("H", "ready_to_review", "2026-12-01T04:00Z"),
    ("H", "ready_to_qa", "2026-12-01T05:00Z"),
    ("H", "completed", "2026-12-01T05:30Z"),
    ("B", "in_progress", "2026-12-01T04:00Z"),
    ("B", "ready_to_review", "2026-12-01T08:00Z"),
    ("C", "todo", "2026-12-01T01:00Z"),
    ("A", "todo", "2026-12-01T01:00Z"),
    ("A", "in_progress", "2026-12-01T09:00Z"),
]
NOW = "2026-12-01T10:00Z"
#: The worked example's ETA and each lane's finish (work, review, qa).
FINISH_AT = "2026-12-01T18:30:00+00:00"
LANE_FINISH = ["2026-12-01T17:00:00+00:00", "2026-12-01T18:00:00+00:00", FINISH_AT]

#: The agent the daily budget is scoped to.
AGENT = "claude-code"


def seed_budgets(url: str) -> None:
    """``daily`` ($25 a day for AGENT): $5 reported + one unpriced call + $2 reserved;
    ``tiny`` ($0.01 in total for everything): over its limit."""
    repo = open_repository(url)
    try:
        set_budget(repo, make_budget("daily", 25, window="day", scope=[f"agent={AGENT}"]))
        set_budget(repo, make_budget("tiny", "0.01", window="total", action="warn"))
        reserve(repo, Decimal(2), CallContext(agent=AGENT))
    finally:
        repo.engine.dispose()
    with Ledger(url) as ledger, ledger.run("task", "Budgeted", agent=AGENT):
        ledger.record(Usage(input_tokens=10, output_tokens=5), model="m", cost_usd="5")
        ledger.record(Usage(input_tokens=10), model="no-such-model-for-a-price")


def seed_worked_example(url: str) -> None:
    """The status events of the worked example."""
    with Ledger(url) as ledger:
        for key, status, moment in WORKED:
            ledger.task_status(key, status, at=parse_instant(moment))
