"""Budgets: spending limits over windows and scopes, enforced before the call.

- :mod:`~llmledger.budgets.model`: a budget, its window (in a time zone) and its scope.
- :mod:`~llmledger.budgets.book`: budgets in the ledger (set, list, remove).
- :mod:`~llmledger.budgets.spend`: what a scope spent in a window, and what is reserved.
- :mod:`~llmledger.budgets.reserve`: reserve before a call, settle when it is recorded.
- :mod:`~llmledger.budgets.guard`: ``Ledger.reserve``: the worst case, the run's scope.
- :mod:`~llmledger.budgets.status`: spent, reserved, remaining, pace, forecast.

The names below load their modules on first use (the ledger imports
:mod:`~llmledger.budgets.current` on every record; it must stay cheap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmledger._lazy import lazy_getattr

if TYPE_CHECKING:
    from llmledger.budgets.book import get_budget, list_budgets, remove_budget, set_budget
    from llmledger.budgets.model import Budget, CallContext, Window, covered, make_budget
    from llmledger.budgets.reserve import DEFAULT_EXPIRY, Reservation, release, reserve
    from llmledger.budgets.status import BudgetStatus, budget_status

__all__ = [
    "DEFAULT_EXPIRY",
    "Budget",
    "BudgetStatus",
    "CallContext",
    "Reservation",
    "Window",
    "budget_status",
    "covered",
    "get_budget",
    "list_budgets",
    "make_budget",
    "release",
    "remove_budget",
    "reserve",
    "set_budget",
]

_LAZY = {
    "get_budget": "llmledger.budgets.book",
    "list_budgets": "llmledger.budgets.book",
    "remove_budget": "llmledger.budgets.book",
    "set_budget": "llmledger.budgets.book",
    "Budget": "llmledger.budgets.model",
    "CallContext": "llmledger.budgets.model",
    "Window": "llmledger.budgets.model",
    "covered": "llmledger.budgets.model",
    "make_budget": "llmledger.budgets.model",
    "DEFAULT_EXPIRY": "llmledger.budgets.reserve",
    "Reservation": "llmledger.budgets.reserve",
    "release": "llmledger.budgets.reserve",
    "reserve": "llmledger.budgets.reserve",
    "BudgetStatus": "llmledger.budgets.status",
    "budget_status": "llmledger.budgets.status",
}

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
