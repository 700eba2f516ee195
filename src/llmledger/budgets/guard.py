"""``Ledger.reserve``: a call's worst case, the scope it runs in, and the context manager
that holds the reservation until the call is recorded (or gives it back)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from llmledger.budgets.current import Reservation, reset, using
from llmledger.budgets.model import CallContext
from llmledger.budgets.reserve import DEFAULT_EXPIRY, release, reserve
from llmledger.errors import BudgetExceeded, UsageError

if TYPE_CHECKING:
    from llmledger.ledger import Ledger, Run
    from llmledger.pricing import Pricer

__all__ = [
    "call_context",
    "give_back",
    "has_block_budgets",
    "hold",
    "reservation",
    "settling",
    "start_refusal",
    "worst_case",
]


def worst_case(
    estimate_usd: Decimal | float | int | str | None,
    *,
    model: str | None,
    prompt: str | None,
    max_output_tokens: int | None,
    provider: str | None = None,
    pricer: Pricer | None = None,
) -> Decimal | None:
    """What a call may cost at most: ``estimate_usd`` when given, else the estimate module's
    high end for ``prompt`` and ``max_output_tokens`` on ``model``. None when it cannot be
    bounded (no model, or a model without a price)."""
    if estimate_usd is not None:
        try:
            amount = Decimal(str(estimate_usd).strip())
        except ArithmeticError:
            raise UsageError("estimate_usd", f"{estimate_usd!r} is not a number") from None
        if not amount.is_finite() or amount < 0:
            raise UsageError("estimate_usd", f"must be a number of USD >= 0, not {estimate_usd}")
        return amount
    if model is None:
        return None
    from llmledger.estimate import estimate_cost

    estimate = estimate_cost(
        prompt or "", model, max_output_tokens=max_output_tokens, provider=provider, pricer=pricer
    )
    return estimate.cost_high_usd


def call_context(run: Run | None, *, model: str | None, provider: str | None) -> CallContext:
    """What a budget's scope can know before the call: the run's agent and the keys of the
    run and its ancestors (``workflow``), the model, provider and this host."""
    keys: list[str] = []
    node = run
    while node is not None:
        if node.key is not None:
            keys.append(node.key)
        node = node.parent
    return CallContext(
        agent=run.agent if run is not None else None,
        workflows=tuple(keys),
        model=model,
        provider=provider,
        host=socket.gethostname(),
    )


@contextmanager
def reservation(
    ledger: Ledger,
    run: Run | None,
    amount_usd: Decimal | None,
    *,
    model: str | None,
    provider: str | None,
    expires_in: float | timedelta | None,
    now: datetime | None = None,
) -> Iterator[Reservation]:
    """Reserve, make the reservation the one the next ``record()`` in this context settles,
    and give back what is left unsettled on exit. ``amount_usd`` None (unbounded) reserves
    nothing but still refuses when a budget is already at its limit."""
    if isinstance(expires_in, (int, float)):
        expires_in = timedelta(seconds=expires_in)
    expiry = expires_in if expires_in is not None else DEFAULT_EXPIRY
    amount = amount_usd if amount_usd is not None else Decimal(0)
    held: Reservation | None = None
    try:
        held = reserve(
            ledger.repository,
            amount,
            call_context(run, model=model, provider=provider),
            run_id=run.id if run is not None else None,
            expires_in=expiry,
            now=now,
        )
    except BudgetExceeded:
        raise
    except Exception as exc:  # the store failed: the call goes ahead, unguarded, and says so
        ledger._failed("reserve against the budgets", exc)
    if held is None:
        held = Reservation("", amount, (), (now or datetime.now(UTC)) + expiry)
    token = using(held)
    try:
        yield held
    finally:
        reset(token)
        if held.holds:
            ledger._guard("release a budget reservation", release, ledger.repository, held)


def has_block_budgets(ledger: Ledger) -> bool:
    """Whether ``ledger`` (local) has a ``block`` budget; the list is cached for a few
    seconds (:data:`llmledger.budgets.alerts.BUDGETS_TTL`), so asking on every call is cheap."""
    if ledger.remote is not None:
        return False
    from llmledger.budgets.alerts import known_budgets

    budgets = ledger._guard("read the budgets", known_budgets, ledger)
    return any(b.action == "block" for b in budgets or ())


def hold(
    ledger: Ledger,
    *,
    model: str | None,
    prompt: str | None,
    max_output_tokens: int | None,
    provider: str | None,
) -> Reservation | None:
    """For the integrations: reserve a call's worst case when the ledger has block budgets and
    no reservation is open in this context already (the caller's own ``ledger.reserve``).
    Raises :class:`BudgetExceeded`; returns the reservation (settled by the record the
    integration makes; see :func:`settling`), or None when nothing is held."""
    from llmledger.budgets.current import current_reservation
    from llmledger.ledger import current_run

    if current_reservation() is not None or not has_block_budgets(ledger):
        return None
    amount = worst_case(
        None,
        model=model,
        prompt=prompt,
        max_output_tokens=max_output_tokens,
        provider=provider,
        pricer=ledger.pricer,
    )
    run = current_run()
    try:
        held = reserve(
            ledger.repository,
            amount if amount is not None else Decimal(0),
            call_context(run, model=model, provider=provider),
            run_id=run.id if run is not None else None,
        )
    except BudgetExceeded:
        raise
    except Exception as exc:
        ledger._failed("reserve against the budgets", exc)
        return None
    return held if held.holds else None


@contextmanager
def settling(ledger: Ledger, held: Reservation | None) -> Iterator[None]:
    """Around a ``record()``: the record settles ``held``; what it does not settle (the
    record failed) is given back."""
    if held is None:
        yield
        return
    token = using(held)
    try:
        yield
    finally:
        reset(token)
        if held.holds:
            ledger._guard("release a budget reservation", release, ledger.repository, held)


def give_back(ledger: Ledger, held: Reservation | None) -> None:
    """Release ``held`` (the call failed or was not made); never raises."""
    if held is not None and held.holds:
        ledger._guard("release a budget reservation", release, ledger.repository, held)


def start_refusal(
    ledger: Ledger,
    *,
    agent: str | None,
    model: str | None,
    keys: tuple[str, ...],
    parent: Run | None = None,
) -> BudgetExceeded | None:
    """For ``llmledger run`` and ``plan run``, before an attempt starts: the refusal of a
    ``block`` budget that the work (its agent, model, and the run keys it will be filed under
    — ``keys`` plus those of ``parent`` and its ancestors) falls in and that is already at its
    limit; None otherwise, and None when the budgets cannot be read (logged and counted)."""
    if ledger.remote is not None:
        return None
    from llmledger.budgets.reserve import refusal

    above = call_context(parent, model=model, provider=None)
    context = CallContext(
        agent=agent or above.agent,
        workflows=tuple(k for k in keys if k) + (above.workflows or ()),
        model=model,
        host=above.host,
    )
    return ledger._guard("check the budgets", refusal, ledger.repository, context)
