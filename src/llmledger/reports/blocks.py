"""The blocks report: calls grouped into 5-hour billing windows, as ccusage defines them.

A block starts at its first call's time floored to the hour; a call more than 5 hours after the
block's start or after the previous call starts a new one, and a gap block marks a long idle
stretch. The active block carries its burn rate and a projection to its end. Like
:mod:`llmledger.reports.periods` it reads through the :class:`~llmledger.store.sqlite_reader.Reader`
protocol and does not import SQLAlchemy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger.reports.filters import Filters, calls_where
from llmledger.reports.sums import add_sums, calls_sums, sums_to_totals
from llmledger.store.sqlite_reader import Reader
from llmledger.totals import Totals
from llmledger.values import datetime_to_micros, micros_to_datetime

__all__ = ["Block", "blocks"]


@dataclass(slots=True)
class Block:
    """A 5-hour billing window as ccusage defines it (or a gap between two)."""

    start: datetime
    end: datetime
    first_at: datetime | None = None
    last_at: datetime | None = None
    totals: Totals = field(default_factory=Totals)
    models: list[str] = field(default_factory=list)
    entries: int = 0
    is_gap: bool = False
    is_active: bool = False

    def burn_rate(self) -> dict[str, float] | None:
        """Tokens per minute and USD per hour between the first and last call (active only)."""
        if not self.is_active or self.first_at is None or self.last_at is None:
            return None
        minutes = (self.last_at - self.first_at).total_seconds() / 60
        if minutes <= 0:
            return None
        usage = self.totals.usage
        total = usage.total_tokens or 0
        io = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        cost = float(self.totals.cost_usd or 0)
        return {
            "tokens_per_minute": total / minutes,
            "tokens_per_minute_indicator": io / minutes,
            "cost_per_hour": cost / minutes * 60,
        }

    def projection(self, now: datetime) -> dict[str, float] | None:
        """Totals projected to the block's end at the current burn rate (active only)."""
        rate = self.burn_rate()
        if rate is None:
            return None
        remaining = max(0.0, (self.end - now).total_seconds() / 60)
        return {
            "total_tokens": (self.totals.usage.total_tokens or 0)
            + rate["tokens_per_minute"] * remaining,
            "cost_usd": float(self.totals.cost_usd or 0) + rate["cost_per_hour"] / 60 * remaining,
            "remaining_minutes": remaining,
        }


def blocks(
    reader: Reader,
    *,
    filters: Filters = Filters(),
    cost: str = "auto",
    hours: float = 5,
    now: datetime | None = None,
) -> list[Block]:
    """Calls grouped into ``hours``-long blocks (ccusage ``blocks``): a block starts at its first
    call's time floored to the hour; a call more than ``hours`` after the block's start or after
    the previous call starts a new one; a gap block marks a long idle stretch.

    ``reader`` is a :class:`~llmledger.store.Repository` or a
    :class:`~llmledger.store.sqlite_reader.SqliteReader`."""
    length = timedelta(hours=hours)
    now = now or datetime.now(UTC)
    span, hour = int(hours * 3_600_000_000), 3_600_000_000
    since = None if filters.since is None else datetime_to_micros(filters.since)
    until = None if filters.until is None else datetime_to_micros(filters.until)
    where, params = calls_where(filters, since, until)
    where = f"{where} AND started_at IS NOT NULL" if where else "WHERE started_at IS NOT NULL"
    # Blocks are found on the call times alone (an index scan), then each block's sums come
    # from one query over its time range: objects are made once per block (a year of calls
    # is a few hundred blocks but ~10^5 calls).
    found: list[tuple[int, int, int]] = []  # block start, first call, last call (µs)
    for (at,) in reader.fetch(f"SELECT started_at FROM calls {where} ORDER BY started_at", params):
        block = found[-1] if found else None
        if block is None or at - block[0] > span or at - block[2] > span:
            found.append((at - at % hour, at, at))
        else:
            found[-1] = (block[0], block[1], at)
    sums_sql = calls_sums(reader, cost)
    per_model = (
        f"SELECT model, MIN(started_at) AS first_at, {', '.join(sums_sql)} "
        f"FROM calls {where} AND started_at >= ? AND started_at <= ? "
        "GROUP BY model ORDER BY first_at, model"
    )
    summed: list[tuple[int, int, int, list[Any], list[str]]] = []
    for start, first, last in found:
        sums: list[Any] = [None] * len(sums_sql)
        models: list[str] = []
        for model, _, *values in reader.fetch(per_model, [*params, first, last]):
            add_sums(sums, values)
            if model and model != "<synthetic>":
                models.append(model)
        summed.append((start, first, last, sums, models))
    out: list[Block] = []
    for start, first, last, sums, models in summed:
        begin = micros_to_datetime(start)
        assert begin is not None
        previous = out[-1].last_at if out else None
        if previous is not None and begin > previous + length:
            out.append(Block(previous + length, begin, is_gap=True))
        totals = sums_to_totals(sums)
        out.append(
            Block(
                begin,
                begin + length,
                first_at=micros_to_datetime(first),
                last_at=micros_to_datetime(last),
                totals=totals,
                models=models,
                entries=totals.calls,
            )
        )
    current = out[-1] if out else None
    if current is not None and current.last_at is not None:
        current.is_active = now - current.last_at < length and now < current.end
    return out
