"""Column types that store money and time exactly and identically on SQLite and PostgreSQL.

Money is an integer count of pico-dollars (10⁻¹² USD) so that SQL ``SUM`` is exact on both
engines; timestamps are integer microseconds since the Unix epoch (UTC) so that time bucketing
is plain integer arithmetic. Python code only ever sees ``Decimal`` and aware ``datetime``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Dialect, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from llmledger.values import (
    PICO,
    datetime_to_micros,
    micros_to_datetime,
    money_from_pico,
    money_to_pico,
)

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

#: An auto-incrementing 64-bit key (SQLite only auto-increments a column typed INTEGER).
BigIntId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

#: JSON, stored as JSONB on PostgreSQL.
JsonType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


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
