"""The documents the budget and forecast reads return (:mod:`llmledger.api.reads_plan`), as
pydantic models for the service's OpenAPI. They describe; they do not build: the documents are
the CLI's ``budget status --json``, ``velocity --json``, ``eta --json`` and
``eta --backtest --json``, built by :mod:`llmledger.budgets.status` and
:mod:`llmledger.forecast.report`.

Every field is listed (``additionalProperties: false``) and required, null where unknown; money
is USD as a number, times ISO 8601 with their offset.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BacktestDocument",
    "BacktestPointRow",
    "BacktestSummary",
    "BudgetRow",
    "BudgetsDocument",
    "CostForecastPart",
    "EtaDocument",
    "EtaLane",
    "VelocityDocument",
    "VelocityRow",
]

_Hours = Field(description="Hours; null when unknown (no sample, no configured hours).")


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetRow(_Closed):
    """A budget in its current window (``llmledger budget status --json``)."""

    name: str
    limit_usd: float
    window: str = Field(description="total, day, week, month or rolling:<N>h.")
    tz: str | None = Field(description="The zone of a calendar window (null: UTC).")
    scope: dict[str, str] = Field(description="The calls it counts: key=value, all must match.")
    action: str = Field(description="block (refuses reservations over it) or warn.")
    thresholds: list[int] = Field(description="Warning thresholds, percent of the limit.")
    notify: str | None
    now: datetime = Field(description="The moment the status is worked out at.")
    window_start: datetime | None = Field(description="null for a total budget.")
    resets_at: datetime | None = Field(description="A calendar window's end; null otherwise.")
    spent_usd: float = Field(description="Known cost of the calls in scope in the window.")
    reserved_usd: float = Field(description="Held by reservations still open.")
    remaining_usd: float = Field(description="limit - spent - reserved (negative when over).")
    used_percent: float = Field(description="spent / limit x 100.")
    calls: int = Field(ge=0)
    unpriced_calls: int = Field(
        ge=0, description="Calls in scope without a known cost: spend the budget cannot see."
    )
    burn_usd_per_hour: float | None
    burn_last_hour_usd_per_hour: float | None
    forecast_usd: float | None = Field(description="Spend at the window's end at this pace.")
    overrun_at: datetime | None = Field(description="When the pace crosses the limit.")


class BudgetsDocument(_Closed):
    """Every budget's status, by name."""

    budgets: list[BudgetRow]


class VelocityRow(_Closed):
    """One lane's velocity (``llmledger velocity --json``)."""

    lane: str
    from_: str = Field(alias="from")
    to: str
    samples: int = Field(ge=0)
    mean_hours: float | None = _Hours
    median_hours: float | None = _Hours
    velocity_hours: float | None = _Hours
    source: str | None = Field(description="events, runs, config or mixed; null: none.")


class VelocityDocument(_Closed):
    """Every lane's velocity at ``at``."""

    at: datetime
    lanes: list[VelocityRow]


class EtaLane(_Closed):
    """One lane of the ETA."""

    lane: str
    from_: str = Field(alias="from")
    to: str
    velocity_hours: float | None = _Hours
    source: str | None
    workers: int = Field(ge=1)
    tasks_in_lane: int = Field(ge=0)
    tasks_to_come: int = Field(ge=0)
    remaining_hours: float | None = _Hours
    finish_at: datetime | None


class CostForecastPart(_Closed):
    """What the open tasks will cost (null with a reason when no completed task is priced)."""

    expected_usd: float | None
    p90_usd: float | None
    basis: str | None
    tasks_priced: int = Field(ge=0)
    reason: str | None


class BacktestSummary(_Closed):
    """The ETA's measured error over past completions (null: no usable point yet)."""

    points: int = Field(ge=0)
    median_abs_error_pct: float | None
    bias_pct: float | None


class EtaDocument(_Closed):
    """``llmledger eta --json``: when the open tasks will all be done, and their cost."""

    at: datetime
    lanes: list[EtaLane]
    open_tasks: int = Field(ge=0)
    finish_at: datetime | None
    reason: str | None = Field(description="Why there is no finish_at, when there is none.")
    cost: CostForecastPart
    backtest: BacktestSummary


class BacktestPointRow(_Closed):
    """A past completion: what the ETA said then, and what happened."""

    at: datetime
    open_tasks: int = Field(ge=0)
    predicted_at: datetime
    actual_at: datetime
    predicted_hours: float
    actual_hours: float
    error_pct: float = Field(description="(predicted - actual) / actual x 100.")


class BacktestDocument(_Closed):
    """``llmledger eta --backtest --json``."""

    at: datetime
    points: list[BacktestPointRow]
    median_abs_error_pct: float | None
    bias_pct: float | None
