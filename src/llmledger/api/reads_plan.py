"""The reads of budgets and forecasts: each returns exactly the JSON the CLI prints with
``--json`` for the same question, built by the same functions.

- ``GET /v1/budgets`` = ``llmledger budget status --json`` (:mod:`llmledger.budgets.status`)
- ``GET /v1/forecast/velocity`` = ``llmledger velocity --json``
- ``GET /v1/forecast/eta`` = ``llmledger eta --json`` (with its cost and backtest summary)
- ``GET /v1/forecast/backtest`` = ``llmledger eta --backtest --json``

The forecasts use the service's default lanes (``LLMLEDGER_LANES``, else
``~/.config/llmledger/lanes.toml``, else mcoda's). A ledger with no status event answers 404
with the CLI's message ("no status history yet: write one with ..."). The reads need a key
with the ``read`` (or ``admin``) scope. The dashboard's budgets and forecast pages read the
document builders below, so a page and its API link say the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError

from llmledger.api.app import repository
from llmledger.api.auth import require
from llmledger.api.errors import error_responses
from llmledger.api.plan_models import (
    BacktestDocument,
    BudgetsDocument,
    EtaDocument,
    VelocityDocument,
)
from llmledger.api.reads import Document, no_nul_in_query
from llmledger.budgets import budget_status, get_budget, list_budgets
from llmledger.forecast.lanes import resolve_lanes
from llmledger.forecast.report import NoHistory, Settings, eta_report, velocity_report
from llmledger.forecast.velocity import Mode
from llmledger.store import Repository
from llmledger.timespec import parse_instant

__all__ = [
    "budgets_document",
    "eta_documents",
    "forecast_settings",
    "router",
    "velocity_document",
]

router = APIRouter(
    prefix="/v1",
    tags=["reads"],
    dependencies=[Depends(require("read")), Depends(no_nul_in_query)],
    responses=error_responses(401, 403),
)

Repo = Annotated[Repository, Depends(repository)]

#: The most past completions a backtest checks.
MAX_POINTS = 100


# -- the documents (also the dashboard's) ----------------------------------------------------


def budgets_document(repo: Repository, name: str | None = None) -> dict[str, Any] | None:
    """``budget status --json``: every budget (or the one ``name`` names; None when there is
    no such budget) where it stands now."""
    if name is not None:
        found = get_budget(repo, name)
        if found is None:
            return None
        budgets = [found]
    else:
        budgets = list_budgets(repo)
    return {"budgets": [budget_status(repo, b).to_dict() for b in budgets]}


def forecast_settings(
    *, project: str | None = None, window: int = 10, mode: Mode = "empirical", alpha: float = 0.5
) -> Settings:
    """The forecast settings of a read: the default lanes, the CLI's defaults otherwise."""
    return Settings(resolve_lanes(None), window, mode, alpha, project or None)


def velocity_document(repo: Repository, settings: Settings, at: datetime) -> dict[str, Any]:
    """``velocity --json``; raises :class:`NoHistory` when there is no status event."""
    found = velocity_report(repo, settings, at)
    return {"at": at.isoformat(), "lanes": [v.to_dict() for v in found]}


def eta_documents(
    repo: Repository, settings: Settings, at: datetime, *, backlog: int = 0, points: int = 10
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``eta --json``, ``eta --backtest --json``) from one ETA report; raises
    :class:`NoHistory` when there is no status event."""
    report = eta_report(repo, settings, at, backlog=backlog, points=points)
    assert report.backtest is not None  # points is not None
    return report.to_dict(), {"at": at.isoformat(), **report.backtest.to_dict()}


# -- query parameters --------------------------------------------------------------------------

At = Annotated[
    str | None,
    Query(
        description="Forecast as of this moment (events at or before it only): an ISO time, "
        "a date or a duration back (12h). Default: now.",
        examples=["2026-12-01T10:00Z"],
    ),
]
Project = Annotated[str | None, Query(description="Only this project's status events.")]
Window = Annotated[int, Query(ge=1, le=10_000, description="Use the last N samples of each lane.")]
ModeQuery = Annotated[
    Literal["empirical", "config", "mixed"],
    Query(description="empirical, config (the lanes file's hours) or mixed."),
]
Alpha = Annotated[
    float, Query(ge=0, le=1, allow_inf_nan=False, description="The weight of empirical in mixed.")
]
Points = Annotated[
    int, Query(ge=1, le=MAX_POINTS, description="Past completions the backtest checks.")
]


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_instant(value)
    except ValueError as exc:
        error = {"type": "value_error", "loc": ("query", "at"), "msg": str(exc), "input": value}
        raise RequestValidationError([error]) from None


def _no_history(exc: NoHistory) -> HTTPException:
    return HTTPException(404, str(exc))


# -- routes ------------------------------------------------------------------------------------


@router.get(
    "/budgets",
    response_model=BudgetsDocument,
    response_class=Document,
    summary="Where each budget stands (llmledger budget status --json)",
    responses=error_responses(404),
)
def budgets_status(
    repo: Repo,
    name: Annotated[str | None, Query(description="Only this budget (404: none).")] = None,
) -> Response:
    """Each budget in its current window: spent, reserved and remaining, the burn rates ($/h)
    over the window and the last hour, the forecast at the window's end, when the pace
    crosses the limit (``overrun_at``), and the unpriced calls in scope (spend it cannot see)."""
    document = budgets_document(repo, name)
    if document is None:
        raise HTTPException(404, f"name: no budget named {name!r}")
    return Document(document)


@router.get(
    "/forecast/velocity",
    response_model=VelocityDocument,
    response_class=Document,
    summary="Hours per task in each lane (llmledger velocity --json)",
    responses=error_responses(404),
)
def forecast_velocity(
    repo: Repo,
    at: At = None,
    project: Project = None,
    window: Window = 10,
    mode: ModeQuery = "empirical",
    alpha: Alpha = 0.5,
) -> Response:
    """Per lane: the samples used (the last ``window`` finished visits), their mean and
    median hours, the velocity estimates use and its source. 404: no status history."""
    moment = _at(at)
    settings = forecast_settings(project=project, window=window, mode=mode, alpha=alpha)
    try:
        return Document(velocity_document(repo, settings, moment))
    except NoHistory as exc:
        raise _no_history(exc) from None


@router.get(
    "/forecast/eta",
    response_model=EtaDocument,
    response_class=Document,
    summary="When the open tasks will be done, and their cost (llmledger eta --json)",
    responses=error_responses(404),
)
def forecast_eta(
    repo: Repo,
    at: At = None,
    project: Project = None,
    window: Window = 10,
    mode: ModeQuery = "empirical",
    alpha: Alpha = 0.5,
    backlog: Annotated[
        int, Query(ge=0, le=100_000, description="Tasks not started yet, beside the open.")
    ] = 0,
    points: Points = 10,
) -> Response:
    """The ETA of the open tasks (per lane and overall; null with a reason when a lane has
    no velocity), their expected and p90 cost, and the backtest's summary (the median
    absolute error of past ETAs). 404: no status history."""
    moment = _at(at)
    settings = forecast_settings(project=project, window=window, mode=mode, alpha=alpha)
    try:
        eta, _ = eta_documents(repo, settings, moment, backlog=backlog, points=points)
    except NoHistory as exc:
        raise _no_history(exc) from None
    return Document(eta)


@router.get(
    "/forecast/backtest",
    response_model=BacktestDocument,
    response_class=Document,
    summary="The ETA checked against past completions (llmledger eta --backtest --json)",
    responses=error_responses(404),
)
def forecast_backtest(
    repo: Repo,
    at: At = None,
    project: Project = None,
    window: Window = 10,
    mode: ModeQuery = "empirical",
    alpha: Alpha = 0.5,
    points: Points = 10,
) -> Response:
    """The last ``points`` usable completions before ``at``: what the ETA said then and when
    the work was done, each point's error, their median absolute error and bias. 404: no
    status history."""
    moment = _at(at)
    settings = forecast_settings(project=project, window=window, mode=mode, alpha=alpha)
    try:
        _, backtest = eta_documents(repo, settings, moment, points=points)
    except NoHistory as exc:
        raise _no_history(exc) from None
    return Document(backtest)
