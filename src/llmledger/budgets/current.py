"""The reservation the next recorded call settles, per context (thread or asyncio task).

Kept apart and cheap to import: the ledger asks it on every ``record()``.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

__all__ = ["Reservation", "current_reservation", "reset", "using"]


@dataclass(eq=False)
class Reservation:
    """A call's worst case held against the ``block`` budgets it falls in (``budgets``: none
    when no block budget matched; nothing is held then)."""

    id: str
    amount_usd: Decimal
    budgets: tuple[str, ...]
    expires_at: datetime
    settled: bool = field(default=False)

    @property
    def holds(self) -> bool:
        """Whether rows are held in the ledger (a budget matched and it is not settled)."""
        return bool(self.budgets) and not self.settled


_current: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "llmledger_reservation", default=None
)


def current_reservation() -> Reservation | None:
    """The reservation the next call recorded in this context settles, if any."""
    reservation = _current.get()
    return reservation if reservation is not None and reservation.holds else None


def using(reservation: Reservation) -> contextvars.Token[Reservation | None]:
    """Make ``reservation`` the one the next recorded call in this context settles."""
    return _current.set(reservation)


def reset(token: contextvars.Token[Reservation | None]) -> None:
    """Undo :func:`using` (a token from another context is ignored)."""
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)
