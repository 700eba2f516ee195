"""Budgets in the ledger: set (create or replace), list, read and remove them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, select

from llmledger.budgets.model import Budget, Window
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import budget_alerts, budget_reservations, budgets

__all__ = [
    "budget_of_row",
    "generation",
    "get_budget",
    "list_budgets",
    "read_budgets",
    "remove_budget",
    "set_budget",
]


_generation = 0


def generation() -> int:
    """A number that changes whenever this process sets or removes a budget (caches of the
    budget list compare it)."""
    return _generation


def _changed() -> None:
    global _generation
    _generation += 1


def budget_of_row(row: Mapping[Any, Any]) -> Budget:
    """A :class:`Budget` from a ``budgets`` row."""
    return Budget(
        name=row["name"],
        limit_usd=Decimal(row["limit_usd"]),
        window=Window.parse(row["window"]),
        tz=row["tz"],
        scope=dict(row["scope"] or {}),
        action=row["action"],
        thresholds=tuple(int(t) for t in row["thresholds"] or ()),
        notify=row["notify"],
    )


def set_budget(repo: Repository, budget: Budget) -> bool:
    """Store ``budget``, replacing one of the same name (its reservations stay; the warnings
    it already sent are forgotten, since the thresholds may have moved). Returns True when it
    replaced one."""
    now = datetime.now(UTC)
    values = {
        "limit_usd": budget.limit_usd,
        "window": str(budget.window),
        "tz": budget.tz,
        "scope": dict(budget.scope),
        "action": budget.action,
        "thresholds": list(budget.thresholds),
        "notify": budget.notify,
        "updated_at": now,
    }
    with repo.engine.begin() as conn:
        found = conn.execute(
            budgets.update().where(budgets.c.name == budget.name).values(**values)
        ).rowcount
        if not found:
            conn.execute(budgets.insert().values(name=budget.name, created_at=now, **values))
        else:
            conn.execute(delete(budget_alerts).where(budget_alerts.c.budget == budget.name))
    _changed()
    return bool(found)


def list_budgets(repo: Repository) -> list[Budget]:
    """Every budget, by name."""
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return read_budgets(conn)


def read_budgets(conn: Connection, names: list[str] | None = None) -> list[Budget]:
    """The budgets (all, or those in ``names``) read on ``conn``, by name."""
    query = select(budgets).order_by(budgets.c.name)
    if names is not None:
        query = query.where(budgets.c.name.in_(names))
    return [budget_of_row(row) for row in conn.execute(query).mappings()]


def get_budget(repo: Repository, name: str) -> Budget | None:
    """The budget called ``name``, or None."""
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        found = read_budgets(conn, [name])
    return found[0] if found else None


def remove_budget(repo: Repository, name: str) -> bool:
    """Remove the budget called ``name`` with its reservations and sent warnings; False when
    there is none."""
    with repo.engine.begin() as conn:
        gone = conn.execute(delete(budgets).where(budgets.c.name == name)).rowcount
        conn.execute(delete(budget_reservations).where(budget_reservations.c.budget == name))
        conn.execute(delete(budget_alerts).where(budget_alerts.c.budget == name))
    _changed()
    return bool(gone)
