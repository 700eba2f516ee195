"""The budgets and forecast pages: the documents of ``GET /v1/budgets`` and
``GET /v1/forecast/{velocity,eta,backtest}`` (built by :mod:`llmledger.api.reads_plan`, the
functions ``budget status --json``, ``velocity --json`` and ``eta --json`` use), drawn."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from llmledger.api.app import repository
from llmledger.api.reads_plan import (
    budgets_document,
    eta_documents,
    forecast_settings,
    velocity_document,
)
from llmledger.forecast.report import FIRST_EVENT_HINT, NoHistory
from llmledger.store import Repository
from llmledger.timespec import parse_instant
from llmledger.web.access import read_access
from llmledger.web.views import csv_response, json_response, query_string, render

__all__ = ["pages"]

pages = APIRouter(include_in_schema=False, dependencies=[Depends(read_access)])

Repo = Annotated[Repository, Depends(repository)]
Format = Annotated[str, Query(pattern="^(html|json|csv)$")]


# -- budgets -----------------------------------------------------------------------------------


@pages.get("/budgets", response_class=HTMLResponse)
def budgets_page(request: Request, repo: Repo, format: Format = "html") -> Response:
    """Each budget: spent vs limit, reserved, remaining, burn rates, the forecast at the
    window's end and when the pace crosses the limit, the unpriced calls in scope."""
    document = budgets_document(repo)
    assert document is not None  # every budget: never "no such name"
    if format == "json":
        return json_response(document, "budgets")
    if format == "csv":
        return csv_response([_flat_budget(b) for b in document["budgets"]], "budgets")
    return render(
        request,
        "budgets.html",
        "budgets",
        api="/v1/budgets",
        params={},
        budgets=[_Bar.of(b) for b in document["budgets"]],
    )


def _flat_budget(row: dict[str, Any]) -> dict[str, Any]:
    scope = " ".join(f"{k}={v}" for k, v in row["scope"].items())
    return {**row, "scope": scope}


class _Bar:
    """A budget row and the widths (percent of the bar) of its spent and reserved parts."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        limit = row["limit_usd"]
        self.spent_pct = min(100.0, row["spent_usd"] * 100 / limit) if limit > 0 else 100.0
        reserved = row["reserved_usd"] * 100 / limit if limit > 0 else 0.0
        self.reserved_pct = max(0.0, min(100.0 - self.spent_pct, reserved))
        self.over = row["remaining_usd"] < 0

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Bar:
        return cls(row)


# -- forecast ----------------------------------------------------------------------------------


@pages.get("/forecast", response_class=HTMLResponse)
def forecast_page(
    request: Request,
    repo: Repo,
    project: str | None = None,
    at: str | None = None,
    format: Format = "html",
) -> Response:
    """Lane velocities, the ETA of the open tasks with their cost, and the backtest's error,
    from the status events (at or before ``at``; of ``project``)."""
    params = {"project": project or None, "at": at or None}
    api = "/v1/forecast/eta" + query_string(params)
    error = None
    velocity = eta = backtest = None
    empty: str | None = None
    try:
        moment = parse_instant(at) if at else datetime.now(UTC)
    except ValueError as exc:
        error, moment = f"at: {exc}", None
    if moment is not None:
        settings = forecast_settings(project=params["project"])
        try:
            velocity = velocity_document(repo, settings, moment)
            eta, backtest = eta_documents(repo, settings, moment)
        except NoHistory as exc:
            empty = str(exc)
    if format != "html":
        if error is not None or empty is not None:
            raise HTTPException(422 if error else 404, error or empty)
        assert velocity is not None
        assert eta is not None
        if format == "json":
            return json_response(eta, "eta")
        return csv_response(velocity["lanes"], "velocity")
    return render(
        request,
        "forecast.html",
        "forecast",
        status_code=422 if error else 200,
        api=api,
        apis={
            "velocity": "/v1/forecast/velocity" + query_string(params),
            "backtest": "/v1/forecast/backtest" + query_string(params),
        },
        params=params,
        error=error,
        empty=empty,
        hint=FIRST_EVENT_HINT,
        at=moment,
        velocity=velocity,
        eta=eta,
        backtest=backtest,
    )
