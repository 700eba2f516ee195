"""What a budget's scope has spent in a window, and what live reservations hold against it.

Read from ``calls`` with the scope as a ``WHERE`` clause; ``workflow`` selects the calls of
every run whose key it names and of those runs' whole subtrees (a recursive CTE over ``runs``,
as a run's inclusive totals are computed). A call is placed in time by when it started, else
when it was recorded (written so that the index on ``started_at`` serves both). A call without
a cost (unpriced) adds nothing to the sum and is counted in ``unpriced_calls``: spend the
budget cannot see, never $0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnElement

from llmledger.budgets.model import Budget
from llmledger.store.schema import budget_reservations, calls, runs
from llmledger.store.types import Money, Timestamp

__all__ = ["Spend", "spend_query", "spent"]

_COLUMNS = {
    "agent": calls.c.agent_id,
    "model": calls.c.model,
    "provider": calls.c.provider,
    "project": calls.c.project,
    "source": calls.c.source,
    "host": calls.c.host,
}


@dataclass(frozen=True, slots=True)
class Spend:
    """Spent (known costs), calls, calls without a cost, and USD reserved by live
    reservations."""

    cost_usd: Decimal
    calls: int
    unpriced_calls: int
    reserved_usd: Decimal


def _in_window(column: Any, start: bool, end: bool) -> list[ColumnElement[bool]]:
    out = []
    if start:
        out.append(column >= bindparam("start", type_=Timestamp))
    if end:
        out.append(column < bindparam("end", type_=Timestamp))
    return out


@lru_cache(maxsize=256)
def _query(scope_keys: tuple[str, ...], start: bool, end: bool) -> Select[Any]:
    """The statement for a scope of these keys and a window with these bounds; values are
    bound at execution, so each shape is built and compiled once."""
    where: list[ColumnElement[bool]] = []
    for key in scope_keys:
        if key == "workflow":
            base = select(runs.c.id).where(runs.c.key == bindparam("scope_workflow"))
            tree = base.cte("wf", recursive=True)
            tree = tree.union_all(select(runs.c.id).where(runs.c.parent_id == tree.c.id))
            where.append(calls.c.run_id.in_(select(tree.c.id)))
        else:
            where.append(_COLUMNS[key] == bindparam(f"scope_{key}"))
    if start or end:
        where.append(
            or_(
                and_(*_in_window(calls.c.started_at, start, end)),
                and_(calls.c.started_at.is_(None), *_in_window(calls.c.recorded_at, start, end)),
            )
        )
    unpriced = case((calls.c.cost_usd.is_(None), 1), else_=0)
    totals = (
        select(
            func.coalesce(func.sum(calls.c.cost_usd), 0).label("cost"),
            func.count().label("n"),
            func.coalesce(func.sum(unpriced), 0).label("unpriced"),
        )
        .where(and_(true(), *where))
        .subquery()
    )
    reserved = (
        select(func.coalesce(func.sum(budget_reservations.c.amount_usd), 0))
        .where(
            budget_reservations.c.budget == bindparam("budget"),
            budget_reservations.c.expires_at > bindparam("now", type_=Timestamp),
        )
        .scalar_subquery()
    )
    return select(
        type_coerce(totals.c.cost, Money),
        totals.c.n,
        totals.c.unpriced,
        type_coerce(reserved, Money),
    )


def spend_query(
    budget: Budget, start: datetime | None, end: datetime | None, now: datetime
) -> tuple[Select[Any], dict[str, Any]]:
    """One statement (one snapshot, so that a call settled meanwhile is counted once: as its
    reservation or as a call) for spend in ``[start, end)`` and the live reservations, with
    its parameters."""
    keys = tuple(sorted(budget.scope))
    params: dict[str, Any] = {f"scope_{key}": budget.scope[key] for key in keys}
    params.update(budget=budget.name, now=now)
    if start is not None:
        params["start"] = start
    if end is not None:
        params["end"] = end
    return _query(keys, start is not None, end is not None), params


def spent(
    conn: Connection,
    budget: Budget,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> Spend:
    """:func:`spend_query` read on ``conn``."""
    query, params = spend_query(budget, start, end, now)
    row = conn.execute(query, params).one()
    cost, n, unpriced, reserved = row[0], row[1], row[2], row[3]
    return Spend(
        cost_usd=cost if cost is not None else Decimal(0),
        calls=int(n),
        unpriced_calls=int(unpriced),
        reserved_usd=reserved if reserved is not None else Decimal(0),
    )
