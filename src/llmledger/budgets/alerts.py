"""Budget warnings: a threshold crossed, or a pace that overruns the limit, fires once per
window (across processes: the row in ``budget_alerts`` that says so is inserted by the one
that fires).

A warning is told three ways: observers that define ``on_budget_event(event)`` (optional,
looked up with ``getattr``), a log warning, and the budget's webhook (``notify``) on a
background thread. Checked after a call is recorded, for the budgets whose scope holds it.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from llmledger.budgets.book import generation, list_budgets
from llmledger.budgets.model import Budget, CallContext
from llmledger.budgets.status import BudgetStatus, budget_status
from llmledger.call import Call
from llmledger.store import Repository
from llmledger.store.schema import budget_alerts

if TYPE_CHECKING:
    from llmledger.ledger import Ledger, Run

__all__ = ["BUDGETS_TTL", "BudgetEvent", "after_record", "check_budget", "known_budgets"]

_log = logging.getLogger("llmledger")
#: How long a ledger trusts the list of budgets it read (seconds): a budget set meanwhile by
#: another process starts warning this much later at most.
BUDGETS_TTL = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: What this process knows has fired, per (engine, budget, window): such a warning is
#: neither claimed again nor worth a query.
_fired: weakref.WeakKeyDictionary[Engine, dict[tuple[Any, ...], set[int | str]]] = (
    weakref.WeakKeyDictionary()
)
_known: weakref.WeakKeyDictionary[Ledger, tuple[float, int, list[Budget]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """A budget warning: ``kind`` threshold (``threshold`` percent of the limit reached) or
    forecast (the pace ends the window over the limit)."""

    budget: str
    kind: Literal["threshold", "forecast"]
    threshold: int | None
    status: BudgetStatus
    text: str

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON values."""
        return {
            "budget": self.budget,
            "kind": self.kind,
            "threshold": self.threshold,
            "text": self.text,
            "status": self.status.to_dict(),
        }


def _window_key(budget: Budget, now: datetime) -> datetime:
    """What "this window" is for firing once: the window's start; a rolling window of N
    hours counts in consecutive N-hour blocks; ``total`` has one window."""
    if budget.window.kind == "total":
        return _EPOCH
    if budget.window.kind == "rolling":
        assert budget.window.hours is not None
        block = timedelta(hours=budget.window.hours)
        return _EPOCH + ((now - _EPOCH) // block) * block
    start, _ = budget.bounds(now)
    assert start is not None
    return start


def _claim(repo: Repository, budget: str, window: datetime, kind: str, threshold: int) -> bool:
    """Insert the row that says this warning fired; False when another got there first."""
    dialect = postgresql if repo.dialect == "postgresql" else sqlite
    insert = (
        dialect.insert(budget_alerts)
        .values(
            budget=budget,
            window_start=window,
            kind=kind,
            threshold=threshold,
            fired_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
        .returning(budget_alerts.c.budget)  # rowcount is no guide on every driver
    )
    with repo.engine.begin() as conn:
        return conn.execute(insert).first() is not None


def _dollars(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def _text(budget: Budget, status: BudgetStatus, kind: str, threshold: int | None) -> str:
    spent, limit = _dollars(status.spent_usd), _dollars(budget.limit_usd)
    unpriced = f" (+ {status.unpriced_calls} unpriced calls)" if status.unpriced_calls else ""
    if kind == "threshold":
        head = f"budget {budget.name!r} reached {threshold}% of its limit"
    else:
        forecast = status.forecast_usd or Decimal(0)
        when = status.overrun_at.isoformat() if status.overrun_at else "the window's end"
        head = (
            f"budget {budget.name!r} is on pace to overrun: forecast "
            f"{_dollars(forecast)} by the window's end, over by {when}"
        )
    return f"{head}: spent {spent}{unpriced} of {limit} ({budget.window})"


def check_budget(
    repo: Repository, budget: Budget, *, now: datetime | None = None
) -> list[BudgetEvent]:
    """The warnings ``budget`` fires now (each claimed in the ledger, so once per window)."""
    now = now or datetime.now(UTC)
    window = _window_key(budget, now)
    # generation(): a budget set again in this process may fire its warnings again.
    key = (budget.name, budget.limit_usd, budget.thresholds, str(budget.window), window)
    seen = _fired.setdefault(repo.engine, {}).setdefault((*key, generation()), set())
    if all(t in seen for t in budget.thresholds) and (
        "forecast" in seen or max(budget.thresholds, default=0) >= 100
    ):
        return []  # everything this window can fire has fired: no query
    status = budget_status(repo, budget, now=now, last_hour=False)
    events = []
    for threshold in budget.thresholds:
        if threshold in seen or status.spent_usd * 100 < budget.limit_usd * threshold:
            continue
        seen.add(threshold)
        if _claim(repo, budget.name, window, "threshold", threshold):
            text = _text(budget, status, "threshold", threshold)
            events.append(BudgetEvent(budget.name, "threshold", threshold, status, text))
    over = status.forecast_usd is not None and status.forecast_usd > budget.limit_usd
    if over and "forecast" not in seen and status.spent_usd < budget.limit_usd:
        seen.add("forecast")
        if _claim(repo, budget.name, window, "forecast", 0):
            text = _text(budget, status, "forecast", None)
            events.append(BudgetEvent(budget.name, "forecast", None, status, text))
    return events


def known_budgets(ledger: Ledger) -> list[Budget]:
    """The ledger's budgets, read at most every :data:`BUDGETS_TTL` seconds (at once after
    this process set or removed one)."""
    now = time.monotonic()
    cached = _known.get(ledger)
    if cached is not None and cached[0] > now and cached[1] == generation():
        return cached[2]
    found = list_budgets(ledger.repository)
    _known[ledger] = (now + BUDGETS_TTL, generation(), found)
    return found


def _context(call: Call, run: Run | None) -> CallContext:
    keys: list[str] = []
    node = run
    while node is not None:
        if node.key is not None:
            keys.append(node.key)
        node = node.parent
    return CallContext(
        agent=call.agent_id,
        workflows=tuple(keys),
        model=call.model,
        provider=call.provider,
        project=call.project,
        source=call.source,
        host=call.host,
    )


def after_record(ledger: Ledger, calls: Sequence[Call], run: Run | None) -> None:
    """Check the budgets that hold any of ``calls`` and tell every warning that fires."""
    budgets = known_budgets(ledger)
    if not budgets:
        return
    contexts = [_context(call, run) for call in calls]
    for budget in budgets:
        if not any(budget.matches(c, unknown_matches=False) for c in contexts):
            continue
        for event in check_budget(ledger.repository, budget):
            _tell(ledger, budget, event)


def _tell(ledger: Ledger, budget: Budget, event: BudgetEvent) -> None:
    _log.warning("llmledger: %s", event.text)
    for observer in ledger.observers:
        hook = getattr(observer, "on_budget_event", None)
        if hook is not None:
            ledger._guard("observer", hook, event)
    if budget.notify:
        from llmledger.budgets.notify import post

        post(budget.notify, event.text)
