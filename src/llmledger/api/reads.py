"""The reads: each returns exactly the JSON the CLI prints with ``--json`` for the same question
(the documents are built once, in :mod:`llmledger.reports.documents`, and the query parameters
are read as the CLI reads its options, by :mod:`llmledger.reports.options`).

- ``GET /v1/runs/{ref}`` = ``llmledger show REF --json``
- ``GET /v1/runs`` = ``llmledger runs --json``
- ``GET /v1/reports/{daily,weekly,monthly,sessions,blocks}`` = that report's ``--json``
- ``GET /v1/reports/tokens?group_by=a,b`` = ``llmledger tokens --group-by a,b --json``
- ``GET /v1/workflows/{key}/usage``, ``/v1/tasks/{key}/usage``, ``/v1/agents/{id}/usage``:
  own and inclusive totals, by model (:mod:`llmledger.reports.subjects`)

Unlike the CLI's reports, the service imports no agent logs first: it reports what writers
sent. A parameter that cannot be read is a 422 naming it (FastAPI's shape); an unknown run,
workflow, task or agent a 404. The reads need a key with the ``read`` (or ``admin``) scope.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from llmledger.api.app import repository
from llmledger.api.auth import require
from llmledger.api.errors import error_responses
from llmledger.api.read_models import (
    BlocksReport,
    PeriodReport,
    RunDocument,
    RunsDocument,
    SessionsReport,
    SubjectUsage,
    TokensReport,
)
from llmledger.reports import documents
from llmledger.reports.options import (
    MAX_HOURS,
    MIN_HOURS,
    OptionError,
    ReportQuery,
    block_hours,
    group_by_dimensions,
    report_query,
    time_range,
)
from llmledger.reports.subjects import subject_usage
from llmledger.store import Repository

__all__ = ["no_nul_in_query", "router"]


def no_nul_in_query(request: Request) -> None:
    """422 for a parameter holding a NUL character, which no stored text holds (PostgreSQL
    cannot even compare with one)."""
    given = [
        *(("path", name, value) for name, value in request.path_params.items()),
        *(("query", name, value) for name, value in request.query_params.multi_items()),
    ]
    for where, name, value in given:
        if "\x00" in str(value):
            error = {"type": "value_error", "loc": (where, name), "msg": "holds a NUL character"}
            raise RequestValidationError([{**error, "input": value}])


router = APIRouter(
    prefix="/v1",
    tags=["reads"],
    dependencies=[Depends(require("read")), Depends(no_nul_in_query)],
    responses=error_responses(401, 403),
)

Repo = Annotated[Repository, Depends(repository)]
CostMode = Literal["auto", "calculate", "reported"]

#: The most runs ``GET /v1/runs`` lists at once.
MAX_RUNS = 10_000


class Document(JSONResponse):
    """A JSON document as the CLI prints it (orjson, the same encoder), unindented."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError:
            # orjson nests at most 255 levels: a run tree over ~120 deep goes through json.
            return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()


def _unreadable(exc: OptionError, value: object) -> RequestValidationError:
    """A 422 in FastAPI's shape that names the query parameter at fault."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", exc.option), "msg": str(exc), "input": value}]
    )


# -- query parameters --------------------------------------------------------------------------

Since = Annotated[
    str | None,
    Query(
        description="From this date or duration back: 2026-06-01, 2026-06-01T09:30, 7d, 12h.",
        examples=["7d"],
    ),
]
Until = Annotated[
    str | None, Query(description="Up to this date (inclusive: the whole day) or time.")
]
Tz = Annotated[
    str | None,
    Query(
        description="The zone of dates and of the report's days: an IANA name or UTC "
        "(default: the server's local zone).",
        examples=["UTC"],
    ),
]
Cost = Annotated[
    CostMode,
    Query(
        description="auto: the log's own cost where it has one, else computed; calculate: "
        "always from tokens; reported: only logged costs (the rest unpriced)."
    ),
]


@dataclass(frozen=True, slots=True)
class _Shared:
    """The query parameters every report takes (the CLI's shared report options)."""

    since: str | None
    until: str | None
    tz: str | None
    source: list[str]
    project: list[str]
    model: list[str]
    agent: list[str]
    host: list[str]
    branch: list[str]
    cost: str

    def query(self) -> ReportQuery:
        try:
            return report_query(
                since=self.since,
                until=self.until,
                tz=self.tz,
                source=self.source,
                project=self.project,
                model=self.model,
                agent=self.agent,
                host=self.host,
                branch=self.branch,
                cost=self.cost,
            )
        except OptionError as exc:
            raise _unreadable(exc, getattr(self, exc.option, None)) from None


def _list(description: str) -> Any:
    return Query(default_factory=list, description=description)


def _shared(
    *,
    since: Since = None,
    until: Until = None,
    tz: Tz = None,
    source: Annotated[
        list[str],
        _list(
            "Only calls from this source: claude, codex, gemini, or a source name such as "
            "openai_chat_completions. Repeatable."
        ),
    ],
    project: Annotated[list[str], _list("Only this project. Repeatable.")],
    model: Annotated[list[str], _list("Only this model. Repeatable.")],
    agent: Annotated[list[str], _list("Only this agent id (claude-code, codex, ...). Repeatable.")],
    host: Annotated[
        list[str],
        _list(
            "Only calls from this machine (the hostname a remote ledger or `import --to` "
            "tagged them with; calls recorded without one match no host). Repeatable."
        ),
    ],
    branch: Annotated[
        list[str],
        _list(
            "Only calls made on this git branch (as the agent's log records it; calls with no "
            "branch recorded match no branch). Repeatable."
        ),
    ],
    breakdown: Annotated[
        bool,
        Query(
            description="Accepted as the CLI's --breakdown; the JSON always holds the "
            "per-model breakdown."
        ),
    ] = False,
    cost: Cost = "auto",
) -> _Shared:
    return _Shared(since, until, tz, source, project, model, agent, host, branch, cost)


Shared = Annotated[_Shared, Depends(_shared)]


# -- runs --------------------------------------------------------------------------------------


@router.get(
    "/runs/{ref}",
    response_model=RunDocument,
    response_class=Document,
    summary="A run and its subtree (llmledger show --json)",
    responses=error_responses(404),
)
def show_run(
    repo: Repo,
    ref: Annotated[
        str, Path(description="The run's id, external key or name, or a unique id prefix.")
    ],
) -> Response:
    """The run ``ref`` names (an id; else the newest run with that key, else with that name;
    else the one run whose id starts with it, 4 characters or more) with its whole subtree:
    each node's status, attempts, own usage (its calls) and inclusive usage (its subtree).
    404 when no run matches."""
    document = documents.run_document(repo, ref)
    if document is None:
        raise HTTPException(404, f"ref: no run with id, key, name or id prefix {ref!r}")
    return Document(document)


@router.get(
    "/runs",
    response_model=RunsDocument,
    response_class=Document,
    summary="The newest runs (llmledger runs --json)",
)
def list_runs(
    repo: Repo,
    kind: Annotated[
        str | None, Query(description="Only runs of this kind (task, plan, ...).")
    ] = None,
    status: Annotated[
        str | None, Query(description="Only runs with this status (running, failed, ...).")
    ] = None,
    since: Annotated[
        str | None, Query(description="Only runs started since: 2026-11-01, 7d, 12h.")
    ] = None,
    until: Annotated[
        str | None, Query(description="Only runs started up to this date (inclusive) or time.")
    ] = None,
    tz: Annotated[str | None, Query(description="The zone of since/until dates.")] = None,
    agent: Annotated[
        str | None, Query(description="Only runs done by this agent id (claude-code, ...).")
    ] = None,
    top: Annotated[bool, Query(description="Only runs with no parent.")] = False,
    limit: Annotated[
        int, Query(ge=1, le=MAX_RUNS, description="At most this many, newest first.")
    ] = 50,
) -> Response:
    """Runs newest first, each with its status, times and inclusive usage (whole subtree)."""
    try:
        _, start, end = time_range(since=since, until=until, tz=tz)
    except OptionError as exc:
        raise _unreadable(exc, {"since": since, "until": until, "tz": tz}[exc.option]) from None
    return Document(
        documents.runs_document(
            repo,
            kind=kind,
            status=status,
            since=start,
            until=end,
            agent=agent,
            top_level=top,
            limit=limit,
        )
    )


# -- reports -----------------------------------------------------------------------------------


def _period_route(kind: str) -> Callable[..., Response]:
    def period(
        repo: Repo,
        shared: Shared,
        by_project: Annotated[
            bool, Query(description="A row per project within each period (--by-project).")
        ] = False,
    ) -> Response:
        query = shared.query()
        return Document(documents.period_document(repo, kind, query, by_project=by_project))

    unit = {"daily": "day", "weekly": "week (Monday to Sunday)", "monthly": "month"}[kind]
    period.__name__ = f"{kind}_report"
    period.__doc__ = (
        f"Tokens and cost per {unit}, with the per-model breakdown (llmledger {kind} --json)."
    )
    return period


for _kind in ("daily", "weekly", "monthly"):
    router.add_api_route(
        f"/reports/{_kind}",
        _period_route(_kind),
        methods=["GET"],
        response_model=PeriodReport,
        response_class=Document,
        summary=f"The {_kind} report (llmledger {_kind} --json)",
    )


@router.get(
    "/reports/sessions",
    response_model=SessionsReport,
    response_class=Document,
    summary="The sessions report (llmledger sessions --json)",
)
def sessions_report(repo: Repo, shared: Shared) -> Response:
    """Tokens and cost per agent session, with its project and first and last activity."""
    return Document(documents.sessions_document(repo, shared.query()))


@router.get(
    "/reports/blocks",
    response_model=BlocksReport,
    response_class=Document,
    summary="The blocks report (llmledger blocks --json)",
)
def blocks_report(
    repo: Repo,
    shared: Shared,
    hours: Annotated[
        float,
        Query(
            ge=MIN_HOURS,
            le=MAX_HOURS,
            allow_inf_nan=False,
            description=f"Block length in hours, {MIN_HOURS:g} to {MAX_HOURS:g}.",
        ),
    ] = 5,
    active: Annotated[bool, Query(description="Only the active block.")] = False,
) -> Response:
    """Usage windows as ccusage defines them (5 hours by default), with the active block's
    burn rate and its projection to the end of the window (as of the request)."""
    try:
        block_hours(hours)
    except OptionError as exc:
        raise _unreadable(exc, hours) from None
    query = shared.query()
    return Document(documents.blocks_document(repo, query, hours=hours, active=active))


@router.get(
    "/reports/tokens",
    response_model=TokensReport,
    response_class=Document,
    summary="Tokens grouped by dimensions (llmledger tokens --json)",
)
def tokens_report(
    repo: Repo,
    shared: Shared,
    group_by: Annotated[
        str,
        Query(
            description="Comma-separated: project, agent, command, day, model, job, action, "
            "provider, host, branch, cwd, subagent, subagent_type (the dimensions llmledger "
            "tokens --group-by takes).",
            examples=["project,model"],
        ),
    ] = "model",
) -> Response:
    """Calls, tokens, duration and cost per combination of the dimensions' values, largest
    cost first; command, action and job are those of the run each call belongs to."""
    try:
        dims = group_by_dimensions(group_by)
    except OptionError as exc:
        raise _unreadable(exc, group_by) from None
    return Document(documents.tokens_document(repo, dims, shared.query()))


# -- usage of a workflow, task or agent --------------------------------------------------------


def _usage(
    repo: Repository,
    subject: str,
    key: str,
    since: str | None,
    until: str | None,
    tz: str | None,
    cost: str,
) -> Response:
    try:
        query = report_query(since=since, until=until, tz=tz, cost=cost)
    except OptionError as exc:
        raise _unreadable(exc, {"since": since, "until": until, "tz": tz}.get(exc.option)) from None
    document = subject_usage(repo, subject, key, filters=query.filters, cost=query.cost)
    if document is None:
        what = "agent id" if subject == "agent" else f"{subject} key"
        raise HTTPException(404, f"{'id' if subject == 'agent' else 'key'}: no {what} {key!r}")
    return Document(document)


_USAGE = (
    "Own and inclusive totals, and the same by model. Only calls started from since to until "
    "count (all when not given)."
)


@router.get(
    "/workflows/{key}/usage",
    response_model=SubjectUsage,
    response_class=Document,
    summary="A workflow's usage, own and inclusive, by model",
    responses=error_responses(404),
)
def workflow_usage(
    repo: Repo,
    key: Annotated[str, Path(description="The workflow's external key.")],
    since: Since = None,
    until: Until = None,
    tz: Tz = None,
    cost: Cost = "auto",
) -> Response:
    """Every workflow run with this key, added up: own usage is the calls recorded in the
    workflow runs themselves, inclusive adds their subtrees (tasks, attempts, sub-agents).
    404 when no workflow run has the key."""
    return _usage(repo, "workflow", key, since, until, tz, cost)


@router.get(
    "/tasks/{key}/usage",
    response_model=SubjectUsage,
    response_class=Document,
    summary="A task's usage, own and inclusive, by model",
    responses=error_responses(404),
)
def task_usage(
    repo: Repo,
    key: Annotated[str, Path(description="The task's external key (a plan task id, 1.1).")],
    since: Since = None,
    until: Until = None,
    tz: Tz = None,
    cost: Cost = "auto",
) -> Response:
    """Every task run with this key, added up: own usage is the calls recorded in the task
    runs themselves, inclusive adds their subtrees (its attempts and what they started).
    404 when no task run has the key."""
    return _usage(repo, "task", key, since, until, tz, cost)


@router.get(
    "/agents/{id}/usage",
    response_model=SubjectUsage,
    response_class=Document,
    summary="An agent's usage, own and inclusive, by model",
    responses=error_responses(404),
)
def agent_usage(
    repo: Repo,
    agent_id: Annotated[str, Path(alias="id", description="The agent id (claude-code, ...).")],
    since: Since = None,
    until: Until = None,
    tz: Tz = None,
    cost: Cost = "auto",
) -> Response:
    """Own usage is the calls the agent made (imported and live alike); inclusive adds every
    call in the subtrees of the runs it did (the sub-agents it started). 404 when no run and
    no call has the agent id."""
    return _usage(repo, "agent", agent_id, since, until, tz, cost)
