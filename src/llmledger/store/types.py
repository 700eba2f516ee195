"""Column types that store money and time exactly and identically on SQLite and PostgreSQL.

Money is an integer count of pico-dollars (10⁻¹² USD) so that SQL ``SUM`` is exact on both
engines; timestamps are integer microseconds since the Unix epoch (UTC) so that time bucketing
is plain integer arithmetic. Python code only ever sees ``Decimal`` and aware ``datetime``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "PICO",
    "BigIntId",
    "JsonType",
    "Money",
    "Timestamp",
    "datetime_to_micros",
    "micros_to_datetime",
    "money_from_pico",
    "money_to_pico",
]

PICO = Decimal("1e-12")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: An auto-incrementing 64-bit key (SQLite only auto-increments a column typed INTEGER).
BigIntId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

#: JSON, stored as JSONB on PostgreSQL.
JsonType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


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


class Money(TypeDecorator[Decimal]):
    """USD as exact integer pico-dollars in the database, ``Decimal`` in Python."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return money_to_pico(Decimal(value))

    def process_result_value(self, value: Any | None, dialect: Dialect) -> Decimal | None:
        return money_from_pico(value)


class Timestamp(TypeDecorator[datetime]):
    """An aware UTC datetime as integer microseconds since the epoch."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return datetime_to_micros(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        return micros_to_datetime(value)
