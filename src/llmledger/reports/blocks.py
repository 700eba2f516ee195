"""The blocks report: calls grouped into 5-hour billing windows, as ccusage defines them.

A block starts at its first call's time floored to the hour; a call more than 5 hours after the
block's start or after the previous call starts a new one, and a call more than 5 hours after
the previous one also leaves a gap block (from that call + 5 h to the next call), as ccusage
20.0.24 does. The active block carries its burn rate and a projection to its end; a token
limit (a number, or the largest past block's tokens) gives each block its share of it and a
status. Like :mod:`llmledger.reports.periods` it reads through the
:class:`~llmledger.store.sqlite_reader.Reader` protocol and does not import SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger.reports.filters import Filters, calls_where
from llmledger.reports.sums import add_sums, calls_sums, sums_to_totals
from llmledger.store.sqlite_reader import Reader
from llmledger.totals import Totals
from llmledger.values import datetime_to_micros, micros_to_datetime

__all__ = [
    "RECENT_DAYS",
    "WARNING_SHARE",
    "Block",
    "active_block",
    "blocks",
    "max_block_tokens",
    "recent_blocks",
    "set_token_limit",
    "token_limit_of",
]

#: ``blocks --recent``: blocks that started in the last this many days (and the active one).
RECENT_DAYS = 3
#: A block whose (projected) tokens pass this share of the token limit is in ``warning``.
WARNING_SHARE = 0.8
_HOUR = 3_600_000_000  # µs


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
    #: The token limit the report was asked to measure blocks against (None: none).
    limit: int | None = None

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

    def limit_status(self, now: datetime) -> dict[str, Any] | None:
        """The block against :attr:`limit` (None without one, and for a gap): the share used,
        the projected tokens and share (active block only), and ``ok`` / ``warning`` (past
        80%) / ``exceeds``, judged on the projection where there is one (as ccusage does)."""
        if self.limit is None or self.is_gap:
            return None
        used = self.totals.usage.total_tokens or 0
        projection = self.projection(now)
        projected = None if projection is None else round(projection["total_tokens"])
        judged = used if projected is None else projected
        if judged > self.limit:
            status = "exceeds"
        elif judged > self.limit * WARNING_SHARE:
            status = "warning"
        else:
            status = "ok"
        return {
            "limit": self.limit,
            "percent_used": used / self.limit * 100,
            "projected_tokens": projected,
            "projected_percent": None if projected is None else projected / self.limit * 100,
            "status": status,
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
    the previous call starts a new one; a call more than ``hours`` after the previous call also
    leaves a gap block, from that call + ``hours`` to the next call. ``now`` (default: the
    current time) decides which block is active.

    ``reader`` is a :class:`~llmledger.store.Repository` or a
    :class:`~llmledger.store.sqlite_reader.SqliteReader`."""
    length = timedelta(hours=hours)
    now = now or datetime.now(UTC)
    span = int(hours * _HOUR)
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
            found.append((at - at % _HOUR, at, at))
        else:
            found[-1] = (block[0], block[1], at)
    sums_sql = calls_sums(reader, cost)
    per_model = (
        f"SELECT model, MIN(started_at) AS first_at, {', '.join(sums_sql)} "
        f"FROM calls {where} AND started_at >= ? AND started_at <= ? "
        "GROUP BY model ORDER BY first_at, model"
    )
    out: list[Block] = []
    for start, first, last in found:
        sums: list[Any] = [None] * len(sums_sql)
        models: list[str] = []
        for model, _, *values in reader.fetch(per_model, [*params, first, last]):
            add_sums(sums, values)
            if model and model != "<synthetic>":
                models.append(model)
        begin, first_at = micros_to_datetime(start), micros_to_datetime(first)
        assert begin is not None
        assert first_at is not None
        previous = out[-1].last_at if out else None
        if previous is not None and first_at > previous + length:
            # ccusage's gap: from the previous call + the length to this call (not its hour).
            out.append(Block(previous + length, first_at, is_gap=True))
        totals = sums_to_totals(sums)
        out.append(
            Block(
                begin,
                begin + length,
                first_at=first_at,
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


def active_block(
    reader: Reader,
    *,
    filters: Filters = Filters(),
    cost: str = "auto",
    hours: float = 5,
    now: datetime | None = None,
) -> Block | None:
    """The block active at ``now`` (default: the current time), or None: the last block of
    :func:`blocks`, found without reading the whole history.

    Where a block starts depends on every call since the last idle stretch longer than
    ``hours`` (the call after one always starts a block), so the call times are walked back
    from the latest to the first such stretch, and only the calls after it are grouped."""
    now = now or datetime.now(UTC)
    span = int(hours * _HOUR)
    until = None if filters.until is None else datetime_to_micros(filters.until)
    since = None if filters.since is None else datetime_to_micros(filters.since)
    where, params = calls_where(filters, since, until)
    where = f"{where} AND started_at IS NOT NULL" if where else "WHERE started_at IS NOT NULL"
    [(latest,)] = reader.fetch(f"SELECT MAX(started_at) FROM calls {where}", params)
    if latest is None or datetime_to_micros(now) - latest >= span:
        return None  # nothing in the last `hours`: no block can be active
    start, page = latest, 1000
    while True:
        times = reader.fetch(
            f"SELECT started_at FROM calls {where} AND started_at < ? "
            f"ORDER BY started_at DESC LIMIT {page}",
            [*params, start],
        )
        for (at,) in times:
            if start - at > span:
                break  # an idle stretch: the chain of blocks starts at `start`
            start = at
        else:
            if len(times) == page:
                continue
        break
    chain = replace(filters, since=micros_to_datetime(start))
    found = blocks(reader, filters=chain, cost=cost, hours=hours, now=now)
    last = found[-1] if found else None
    return last if last is not None and last.is_active else None


def recent_blocks(found: Sequence[Block], now: datetime, days: int = RECENT_DAYS) -> list[Block]:
    """``blocks --recent``: the blocks that started in the last ``days`` days, and the active
    one (as ccusage)."""
    cutoff = now - timedelta(days=days)
    return [b for b in found if b.start >= cutoff or b.is_active]


def max_block_tokens(found: Sequence[Block]) -> int:
    """The most tokens any finished block used (0 when none): ``--token-limit max``. Unlike
    ccusage, taken over every block before ``--recent`` / ``--active`` select some, so the
    limit does not change with what is shown."""
    return max(
        (b.totals.usage.total_tokens or 0 for b in found if not b.is_gap and not b.is_active),
        default=0,
    )


def token_limit_of(spec: str, found: Sequence[Block]) -> int | None:
    """The token limit ``--token-limit`` names: a positive whole number, or ``max`` (see
    :func:`max_block_tokens`; None when no block has finished). :class:`ValueError` for
    anything else."""
    if spec.strip().lower() == "max":
        return max_block_tokens(found) or None
    try:
        value = int(spec.strip().replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{spec!r} is not a token limit: give a positive number or 'max'")
    return value


def set_token_limit(found: Sequence[Block], limit: int | None) -> None:
    """Measure every block of ``found`` against ``limit`` (see :meth:`Block.limit_status`)."""
    for block in found:
        block.limit = limit
