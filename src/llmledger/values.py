"""Money and time units: integer pico-dollars, integer epoch microseconds, the accepted ranges.

Pure (standard library only), so every layer can use them: the sources' range checks, the
ledger, the store's column types (``store/types.py``), the importer and the reports' fast path.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_USD",
    "PICO",
    "datetime_to_micros",
    "micros_to_datetime",
    "money_from_pico",
    "money_to_pico",
]

PICO = Decimal("1e-12")
#: Amounts from a million dollars up are not the cost of a model call, and a few of them would
#: overflow the 64-bit pico-dollar columns (about 9.2 million USD): sources reject them.
MAX_USD = Decimal(10) ** 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The times a call may have, from EARLIEST (inclusive) to LATEST (exclusive), UTC: before
#: 2000 or from 2100 on a timestamp is a bad value (an epoch 0, a year 9999 placeholder), and
#: it would break the reports' local-time arithmetic at the ends of the calendar. Every
#: source and ``Ledger.record`` hold to it (docs/import.md, "Limits of a call").
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def money_to_pico(value: Decimal) -> int:
    """Exact pico-dollars for a Decimal amount, rounding half-even below 10⁻¹²."""
    return int(value.quantize(PICO, rounding=ROUND_HALF_EVEN).scaleb(12))


def money_from_pico(value: int | None) -> Decimal | None:
    """The Decimal amount for a pico-dollar integer (as SQL SUM returns it); None stays None."""
    if value is None:
        return None
    return Decimal(int(value)).scaleb(-12)


def datetime_to_micros(value: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def micros_to_datetime(value: int | None) -> datetime | None:
    """The aware UTC datetime for stored microseconds; None stays None."""
    if value is None:
        return None
    return _EPOCH + timedelta(microseconds=int(value))
