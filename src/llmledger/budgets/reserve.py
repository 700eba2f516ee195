"""Reserve before a call, settle when it is recorded: budgets that hold under concurrency.

A reservation is one transaction that reads each matching ``block`` budget's spend in its
window plus its live reservations, and inserts its own only if every budget stays within its
limit. Writers are serialized so no two reservations can both see the same room: on SQLite
the transaction begins ``BEGIN IMMEDIATE`` (the engine's default for writes), on PostgreSQL it
locks the budgets' rows (``SELECT ... FOR UPDATE``, in name order: no deadlock). Settling
deletes the reservation in the transaction that writes the call, so a concurrent reader sees
the amount once (as the reservation or as the call), never twice and never not at all.

A reservation expires (default :data:`DEFAULT_EXPIRY`) so that a crashed process cannot hold
a budget for ever; expired rows are deleted by the next reservation.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Connection, delete, select

from llmledger.budgets.book import budget_of_row, read_budgets
from llmledger.budgets.current import Reservation
from llmledger.budgets.model import Budget, CallContext
from llmledger.budgets.spend import spent
from llmledger.errors import BudgetExceeded
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import budget_reservations, budgets

__all__ = ["DEFAULT_EXPIRY", "Reservation", "refusal", "release", "reserve", "settle"]

#: How long a reservation holds when it is neither settled nor released.
DEFAULT_EXPIRY = timedelta(minutes=10)


def _matching(conn: Connection, context: CallContext) -> list[Budget]:
    return [b for b in read_budgets(conn) if b.action == "block" and b.matches(context)]


def reserve(
    repo: Repository,
    amount_usd: Decimal,
    context: CallContext,
    *,
    run_id: str | None = None,
    expires_in: timedelta = DEFAULT_EXPIRY,
    now: datetime | None = None,
) -> Reservation:
    """Hold ``amount_usd`` against every ``block`` budget whose scope matches ``context``.

    Raises :class:`~llmledger.errors.BudgetExceeded` (and holds nothing) when any of them
    would go over: spent in its window + reserved + ``amount_usd`` above the limit, or already
    at it. ``now`` is for tests (windows and expiry are computed from it)."""
    now = now or datetime.now(UTC)
    reservation = Reservation(uuid.uuid4().hex, amount_usd, (), now + expires_in)
    # A read first, without the write lock: most calls fall in no block budget.
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        names = [b.name for b in _matching(conn, context)]
    if not names:
        return reservation
    with repo.engine.begin() as conn:
        query = select(budgets).where(budgets.c.name.in_(names)).order_by(budgets.c.name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        # Read again under the lock: the definitions may have changed since.
        held = [budget_of_row(row) for row in conn.execute(query).mappings()]
        held = [b for b in held if b.action == "block" and b.matches(context)]
        conn.execute(
            delete(budget_reservations).where(
                budget_reservations.c.budget.in_([b.name for b in held]),
                budget_reservations.c.expires_at <= now,
            )
        )
        for budget in held:
            start, end = budget.bounds(now)
            state = spent(conn, budget, start, end, now)
            used = state.cost_usd + state.reserved_usd
            if used >= budget.limit_usd or used + amount_usd > budget.limit_usd:
                raise BudgetExceeded(
                    budget.name,
                    spent_usd=state.cost_usd,
                    reserved_usd=state.reserved_usd,
                    limit_usd=budget.limit_usd,
                    requested_usd=amount_usd,
                    resets_at=end if budget.window.kind != "rolling" else None,
                )
        if held:
            conn.execute(
                budget_reservations.insert(),
                [
                    {
                        "id": reservation.id,
                        "budget": budget.name,
                        "amount_usd": amount_usd,
                        "created_at": now,
                        "expires_at": reservation.expires_at,
                        "run_id": run_id,
                        "owner_host": socket.gethostname(),
                        "owner_pid": os.getpid(),
                    }
                    for budget in held
                ],
            )
    reservation.budgets = tuple(b.name for b in held)
    return reservation


def settle(conn: Connection, reservation: Reservation) -> None:
    """Delete the reservation on ``conn``: call it in the transaction that writes the call."""
    conn.execute(delete(budget_reservations).where(budget_reservations.c.id == reservation.id))
    reservation.settled = True


def release(repo: Repository, reservation: Reservation) -> None:
    """Give a reservation back unused (the call was not made, or failed before any usage)."""
    if not reservation.holds:
        return
    with repo.engine.begin() as conn:
        settle(conn, reservation)


def refusal(
    repo: Repository, context: CallContext, *, now: datetime | None = None
) -> BudgetExceeded | None:
    """Before starting work that will spend (an agent attempt, a plan task): the refusal of
    the first ``block`` budget matching ``context`` that is already at its limit (spent +
    live reservations), else None. Reads only; holds nothing."""
    now = now or datetime.now(UTC)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        for budget in _matching(conn, context):
            start, end = budget.bounds(now)
            state = spent(conn, budget, start, end, now)
            if state.cost_usd + state.reserved_usd >= budget.limit_usd:
                return BudgetExceeded(
                    budget.name,
                    spent_usd=state.cost_usd,
                    reserved_usd=state.reserved_usd,
                    limit_usd=budget.limit_usd,
                    requested_usd=Decimal(0),
                    resets_at=end if budget.window.kind != "rolling" else None,
                )
    return None
