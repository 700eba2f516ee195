"""The dashboard's routes: server-rendered pages over the reads the API answers with, each
offering the API query behind it and its data as JSON (the API's document) or CSV.

Query parameters are the API's (``since``, ``until``, ``tz``, ``source``, ``project``,
``agent``, ``model``; ``kind``, ``status`` for runs) and are read by the same functions
(:mod:`llmledger.reports.options`), so a page and its API link answer the same question.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from llmledger.api.app import repository
from llmledger.api.reads import MAX_RUNS
from llmledger.reports.documents import run_document, tokens_document
from llmledger.reports.options import OptionError, ReportQuery, report_query, time_range
from llmledger.store import Repository
from llmledger.store.schema import RUN_STATUSES
from llmledger.timespec import parse_tz
from llmledger.web import overview as overview_data
from llmledger.web.access import COOKIE, LoginNeeded, check_key, read_access
from llmledger.web.prices import price_sources
from llmledger.web.runs import MAX_LISTED, flatten, run_calls, runs_page, status_timeline
from llmledger.web.views import csv_response, json_response, query_string, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
pages = APIRouter(include_in_schema=False, dependencies=[Depends(read_access)])

Repo = Annotated[Repository, Depends(repository)]
Format = Annotated[str, Query(pattern="^(html|json|csv)$")]
Values = Annotated[list[str], Query(default_factory=list)]

#: Run kinds offered in the runs filter (any other can be typed).
RUN_KINDS = ("session", "plan", "workflow", "section", "task", "attempt", "agent", "command")
#: Page sizes of the runs list.
PAGE_SIZES = (25, 50, 100)


def _kept(values: list[str]) -> list[str]:
    return [v for v in values if v.strip()]


class _Report:
    """The report filters of the overview and models pages, read as the API reads them."""

    def __init__(
        self,
        period: str,
        since: str | None,
        until: str | None,
        tz: str | None,
        source: list[str],
        project: list[str],
        agent: list[str],
        model: list[str],
    ) -> None:
        self.period = period if period in overview_data.PERIODS else "30d"
        self.tz = tz or None
        self.filters = {
            "source": _kept(source),
            "project": _kept(project),
            "agent": _kept(agent),
            "model": _kept(model),
        }
        self.custom = {"since": since or "", "until": until or ""}
        self.error: str | None = None
        self.query: ReportQuery | None = None
        self.since: str | None = None
        self.until: str | None = None
        try:
            now = datetime.now(parse_tz(self.tz))
            self.since, self.until = overview_data.period_bounds(self.period, since, until, now)
            self.query = report_query(
                since=self.since,
                until=self.until,
                tz=self.tz,
                source=self.filters["source"],
                project=self.filters["project"],
                agent=self.filters["agent"],
                model=self.filters["model"],
            )
        except (OptionError, ValueError) as exc:
            self.error = str(exc)

    @property
    def api_params(self) -> dict[str, Any]:
        """The API query parameters of this question."""
        return {"since": self.since, "until": self.until, "tz": self.tz, **self.filters}

    @property
    def page_params(self) -> dict[str, Any]:
        """The page's own parameters (to keep them across links)."""
        custom = self.custom if self.period == "custom" else {}
        return {"period": self.period, "tz": self.tz, **custom, **self.filters}


def _report(
    *,
    period: str = "30d",
    since: str | None = None,
    until: str | None = None,
    tz: str | None = None,
    source: Values,
    project: Values,
    agent: Values,
    model: Values,
) -> _Report:
    return _Report(period, since, until, tz, source, project, agent, model)


Report = Annotated[_Report, Depends(_report)]


def _empty_ledger(repo: Repository) -> bool:
    return not repo.fetch("SELECT 1 FROM call_rollup LIMIT 1")


# -- overview ----------------------------------------------------------------------------------


@pages.get("/", response_class=HTMLResponse)
def overview_page(
    request: Request, repo: Repo, report: Report, format: Format = "html"
) -> Response:
    """Cost per day by model, totals, tokens by type, top models; top agents and tasks load
    after (``/overview/top``)."""
    api = "/v1/reports/daily" + query_string(report.api_params)
    if report.query is None:
        return render(
            request,
            "overview.html",
            "overview",
            status_code=422,
            report=report,
            api=api,
            data=None,
            empty=False,
            periods=overview_data.PERIODS,
        )
    data = overview_data.overview(repo, report.query)
    if format == "json":
        return json_response(data.document, "daily")
    if format == "csv":
        return csv_response(_daily_rows(data.document), "daily")
    return render(
        request,
        "overview.html",
        "overview",
        report=report,
        api=api,
        data=data,
        empty=data.totals.calls == 0 and _empty_ledger(repo),
        periods=overview_data.PERIODS,
    )


def _daily_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"period": row["period"], **part} for row in document["rows"] for part in row["breakdown"]
    ]


@pages.get("/overview/top", response_class=HTMLResponse)
def overview_top(
    request: Request, repo: Repo, report: Report, format: Format = "html", fragment: bool = False
) -> Response:
    """The top agents and tasks of the overview's question: a page, or with ``fragment`` the
    part the overview loads into itself."""
    if report.query is None:
        raise HTTPException(422, report.error)
    filters = report.query.filters
    agent = filters.agents[0] if len(filters.agents) == 1 else None
    top = overview_data.top_lists(
        repo, report.query, since=filters.since, until=filters.until, agent=agent
    )
    if format == "json":
        return json_response({"agents": top.agents, "tasks": top.tasks}, "top")
    if format == "csv":
        return csv_response(top.agents["rows"], "top-agents")
    runs_api = {"kind": "task", "since": report.since, "until": report.until, "tz": report.tz}
    return render(
        request,
        "_top.html" if fragment else "top_page.html",
        "overview",
        report=report,
        top=top,
        agent=agent,
        agents_api="/v1/reports/tokens" + query_string(report.api_params, group_by="agent"),
        tasks_api="/v1/runs"
        + query_string(runs_api, agent=agent, limit=overview_data.TASKS_SCANNED),
    )


# -- models ------------------------------------------------------------------------------------


@pages.get("/models", response_class=HTMLResponse)
def models_page(request: Request, repo: Repo, report: Report, format: Format = "html") -> Response:
    """Per model: tokens and cost (the API's tokens report by model) and the price source."""
    api = "/v1/reports/tokens" + query_string(report.api_params, group_by="model")
    if report.query is None:
        return render(
            request,
            "models.html",
            "models",
            status_code=422,
            report=report,
            api=api,
            document=None,
            sources=[],
            periods=overview_data.PERIODS,
        )
    document = tokens_document(repo, ["model"], report.query)
    sources = price_sources(repo, report.query.filters)
    if format == "json":
        return json_response(document, "models")
    if format == "csv":
        rows = [
            {
                "model": s.model,
                "price_source": s.label,
                "cost_status": s.cost_status,
                "price_version": s.price_version,
                "calls": s.calls,
                "cost_usd": s.cost_usd,
            }
            for s in sources
        ]
        return csv_response(rows, "price-sources")
    return render(
        request,
        "models.html",
        "models",
        report=report,
        api=api,
        document=document,
        sources=sources,
        periods=overview_data.PERIODS,
    )


# -- runs --------------------------------------------------------------------------------------


@pages.get("/runs", response_class=HTMLResponse)
def runs_list(
    request: Request,
    repo: Repo,
    kind: str | None = None,
    status: str | None = None,
    agent: str | None = None,
    since: str | None = None,
    tz: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 25,
    format: Format = "html",
) -> Response:
    """The runs, newest first, filtered and paginated."""
    params = {"kind": kind, "status": status, "agent": agent, "since": since, "tz": tz}
    params = {k: (v or None) for k, v in params.items()}
    error = None
    try:
        _, start, _ = time_range(since=params["since"], tz=params["tz"])
    except OptionError as exc:
        error, start = str(exc), None
    result = None
    if error is None:
        result = runs_page(
            repo,
            page=page,
            size=size,
            kind=params["kind"],
            status=params["status"],
            since=start,
            agent=params["agent"],
            max_runs=MAX_RUNS,
        )
        if format == "json":
            return json_response({"runs": result.rows}, "runs")
        if format == "csv":
            return csv_response([_flat_run(r) for r in result.rows], "runs")
    api = "/v1/runs" + query_string(params, limit=result.limit if result else None)
    return render(
        request,
        "runs.html",
        "runs",
        status_code=200 if error is None else 422,
        params=params,
        result=result,
        error=error,
        api=api,
        size=size,
        kinds=RUN_KINDS,
        statuses=sorted(RUN_STATUSES),
        sizes=PAGE_SIZES,
    )


def _flat_run(row: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in row.items() if k != "inclusive"}
    flat.update({f"inclusive_{k}": v for k, v in row["inclusive"].items()})
    return flat


@pages.get("/runs/{ref}", response_class=HTMLResponse)
def run_page(request: Request, repo: Repo, ref: str, format: Format = "html") -> Response:
    """A run's tree (own and inclusive usage, attempts), its calls and its status timeline."""
    document = run_document(repo, ref)
    if document is None:
        return render(
            request,
            "run.html",
            "runs",
            status_code=404,
            ref=ref,
            document=None,
            api=f"/v1/runs/{ref}",
        )
    root = document["run"]
    if format == "json":
        return json_response(document, f"run-{root['id']}")
    if format == "csv":
        return csv_response(flatten(root), f"run-{root['id']}")
    calls, call_count = run_calls(repo, root["id"])
    return render(
        request,
        "run.html",
        "runs",
        ref=ref,
        document=document,
        root=root,
        calls=calls,
        call_count=call_count,
        timeline=status_timeline(repo, root["id"], root["key"]),
        max_listed=MAX_LISTED,
        api=f"/v1/runs/{root['id']}",
    )


# -- signing in --------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    """The form that takes a read key."""
    return render(request, "login.html", "", next=_local(next), detail=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key posted with the API's rule; keep it in an HttpOnly cookie."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = _local((form.get("next") or ["/"])[0])
    try:
        check_key(request, key or None)
    except LoginNeeded as exc:
        return render(request, "login.html", "", status_code=401, next=target, detail=exc.detail)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the browser's key."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _local(target: str) -> str:
    """Only a path on this server is a place to go back to (no open redirect)."""
    safe = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if safe else "/"


router.include_router(pages)
