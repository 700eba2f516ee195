"""The exceptions llmledger raises, each naming what was wrong and where."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path


class LedgerError(Exception):
    """Base class of every error llmledger raises on purpose."""


class UsageError(LedgerError, ValueError):
    """A usage record or call is invalid; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ConflictError(UsageError):
    """A write contradicts what the ledger holds (a run that ended with another status);
    ``field`` names the field. The HTTP service answers it with 409."""


class ParseError(LedgerError, ValueError):
    """A payload could not be read as the format it claims to be.

    The message names the source format, the field (when one is at fault) and, for files,
    the path and 1-based line number.
    """

    def __init__(
        self,
        source: str,
        message: str,
        *,
        field: str | None = None,
        path: str | Path | None = None,
        line: int | None = None,
    ) -> None:
        self.source = source
        self.field = field
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        elif line is not None:
            where = f"line {line}: "
        what = f" (field {field!r})" if field else ""
        #: The message without the path and line (for lists that name them already).
        self.detail = f"{source}{what}: {message}"
        super().__init__(f"{where}{self.detail}")


class StoreError(LedgerError):
    """The ledger store could not be opened, migrated or written."""


class BudgetExceeded(LedgerError):
    """A reservation would take a ``block`` budget over its limit: the call was not made.

    Names the budget, what its window has spent and has reserved, the limit, what was asked
    for, and when the window resets (None for a ``total`` or rolling window)."""

    def __init__(
        self,
        budget: str,
        *,
        spent_usd: Decimal,
        reserved_usd: Decimal,
        limit_usd: Decimal,
        requested_usd: Decimal,
        resets_at: datetime | None,
    ) -> None:
        self.budget = budget
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.limit_usd = limit_usd
        self.requested_usd = requested_usd
        self.resets_at = resets_at
        reset = f"; the window resets at {resets_at.isoformat()}" if resets_at else ""
        super().__init__(
            f"budget {budget!r} would be exceeded: spent ${_usd(spent_usd)} + reserved "
            f"${_usd(reserved_usd)} + this call's ${_usd(requested_usd)} > limit "
            f"${_usd(limit_usd)}{reset}"
        )


def _usd(value: Decimal) -> str:
    """An amount without trailing zeros (0.05, not 0.050000000000)."""
    return f"{value.normalize():f}"
