"""Where a budget stands: spent, reserved and remaining in its current window, the pace, and
where that pace ends the window.

Burn rates are USD per hour: over the window so far, and over the last hour. The forecast at
the window's end adds the window's rate over the hours left (a calendar window); a rolling
window of N hours forecasts the last hour's rate × N; a ``total`` budget has no end and no
forecast. ``overrun_at`` is when, at the current pace, the limit is crossed (now when it is
already; None when the pace does not reach it before the window ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from llmledger.budgets.model import Budget
from llmledger.budgets.spend import Spend, spent
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY

__all__ = ["BudgetStatus", "budget_status", "forecast"]

_MICROS_PER_HOUR = Decimal(3_600_000_000)
#: A pace that crosses the limit further away than this (a century) never crosses it.
_NEVER_HOURS = Decimal(24 * 366 * 100)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget in its current window (see the module docstring)."""

    budget: Budget
    now: datetime
    window_start: datetime | None
    resets_at: datetime | None
    spent_usd: Decimal
    reserved_usd: Decimal
    calls: int
    unpriced_calls: int
    burn_usd_per_hour: Decimal | None
    burn_last_hour_usd_per_hour: Decimal | None
    forecast_usd: Decimal | None
    overrun_at: datetime | None

    @property
    def remaining_usd(self) -> Decimal:
        """Limit - spent - reserved (negative when over)."""
        return self.budget.limit_usd - self.spent_usd - self.reserved_usd

    @property
    def used_percent(self) -> Decimal:
        """Spent as a percentage of the limit."""
        return self.spent_usd * 100 / self.budget.limit_usd

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``budget status --json``: money as floats, times ISO 8601."""

        def money(value: Decimal | None) -> float | None:
            return None if value is None else float(value)

        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            **self.budget.to_dict(),
            "now": when(self.now),
            "window_start": when(self.window_start),
            "resets_at": when(self.resets_at),
            "spent_usd": money(self.spent_usd),
            "reserved_usd": money(self.reserved_usd),
            "remaining_usd": money(self.remaining_usd),
            "used_percent": round(float(self.used_percent), 2),
            "calls": self.calls,
            "unpriced_calls": self.unpriced_calls,
            "burn_usd_per_hour": money(self.burn_usd_per_hour),
            "burn_last_hour_usd_per_hour": money(self.burn_last_hour_usd_per_hour),
            "forecast_usd": money(self.forecast_usd),
            "overrun_at": when(self.overrun_at),
        }


def _hours(delta: timedelta) -> Decimal:
    return Decimal(delta // timedelta(microseconds=1)) / _MICROS_PER_HOUR


def forecast(
    budget: Budget,
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    spent_usd: Decimal,
    last_hour_usd: Decimal,
) -> tuple[Decimal | None, Decimal | None, datetime | None]:
    """(burn over the window in $/h, forecast at the window's end, overrun_at); pure."""
    limit = budget.limit_usd
    rate: Decimal | None = None
    projected: Decimal | None = None
    pace = last_hour_usd  # $/h over the last hour
    horizon: datetime | None = None
    if budget.window.kind == "rolling":
        assert budget.window.hours is not None
        rate = spent_usd / budget.window.hours
        projected = last_hour_usd * budget.window.hours
        horizon = None  # a rolling window never ends: crossing at the pace is what counts
    elif start is not None and end is not None:
        elapsed = _hours(now - start)
        rate = spent_usd / elapsed if elapsed > 0 else Decimal(0)
        projected = spent_usd + rate * _hours(end - now)
        pace, horizon = rate, end
    if spent_usd >= limit:
        return rate, projected, now
    if pace <= 0:
        return rate, projected, None
    hours = (limit - spent_usd) / pace
    if horizon is not None and hours >= _hours(horizon - now):
        return rate, projected, None
    if budget.window.kind == "rolling" and projected is not None and projected <= limit:
        return rate, projected, None
    if hours > _NEVER_HOURS:  # beyond any date: it will not be crossed
        return rate, projected, None
    return rate, projected, now + timedelta(hours=float(hours))


def budget_status(
    repo: Repository, budget: Budget, *, now: datetime | None = None, last_hour: bool = True
) -> BudgetStatus:
    """Where ``budget`` stands at ``now`` (default: now). ``last_hour=False`` spares the
    second query of a calendar window (its forecast does not use the last hour's pace; the
    last hour's burn and, for ``total``, ``overrun_at`` are then None)."""
    now = now or datetime.now(UTC)
    start, end = budget.bounds(now)
    last_rate: Decimal | None = None
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        state: Spend = spent(conn, budget, start, end, now)
        if last_hour or budget.window.kind == "rolling":
            last_from = now - timedelta(hours=1)
            if start is not None and start > last_from:
                last_from = start
            # Spent in the last hour is the pace in $/h (also when the window began less
            # than an hour ago: what it spent since, per hour).
            last_rate = spent(conn, budget, last_from, now, now).cost_usd
    pace = last_rate if last_rate is not None else Decimal(0)
    rate, projected, overrun = forecast(budget, now, start, end, state.cost_usd, pace)
    if last_rate is None and budget.window.kind == "total" and state.cost_usd < budget.limit_usd:
        overrun = None  # unknown without the last hour's pace
    return BudgetStatus(
        budget=budget,
        now=now,
        window_start=start,
        resets_at=end if budget.window.kind not in ("rolling", "total") else None,
        spent_usd=state.cost_usd,
        reserved_usd=state.reserved_usd,
        calls=state.calls,
        unpriced_calls=state.unpriced_calls,
        burn_usd_per_hour=rate,
        burn_last_hour_usd_per_hour=last_rate,
        forecast_usd=projected,
        overrun_at=overrun,
    )
