"""The overview page's numbers, read through the reports the API answers with: the daily report
(``GET /v1/reports/daily``, from the roll-up) for the chart, the totals, the tokens by type and
the models; the tokens report by agent (``/v1/reports/tokens?group_by=agent``) and the task runs
(``/v1/runs?kind=task``) for the top agents and tasks, which read ``calls`` and ``runs`` and so
come in a fragment after the page (:func:`top_lists`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from llmledger.reports.documents import report_json, runs_document, tokens_document
from llmledger.reports.options import ReportQuery
from llmledger.reports.periods import period_report
from llmledger.store import Repository
from llmledger.totals import JSON_FIELDS, Totals
from llmledger.usage import Usage

__all__ = ["PERIODS", "Overview", "overview", "period_bounds", "top_lists"]

#: The period picker: its choices and labels.
PERIODS: dict[str, str] = {
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "month": "This month",
    "custom": "Custom",
}
#: How many rows each "top" list shows.
TOP = 10
#: The newest task runs the top tasks are chosen from (the API's ``runs`` cap).
TASKS_SCANNED = 10_000


def period_bounds(
    period: str, since: str | None, until: str | None, now: datetime
) -> tuple[str | None, str | None]:
    """The ``since``/``until`` the API is asked with for a period of the picker: ``7d`` and
    ``30d`` as durations back from now, ``month`` from the first of the month (``now`` in the
    report's zone), ``custom`` the dates given."""
    if period in ("7d", "30d"):
        return period, None
    if period == "month":
        return now.date().replace(day=1).isoformat(), None
    return since or None, until or None


@dataclass(slots=True)
class Overview:
    """What the overview shows: the API's daily document, its totals, per-model totals and the
    chart's series (cost per day, one dataset per model)."""

    document: dict[str, Any]
    totals: Totals
    models: list[tuple[str | None, Totals]]
    chart: dict[str, Any]
    undated_calls: int = 0
    tokens_by_type: list[tuple[str, int | None]] = field(default_factory=list)

    @property
    def cache_hit_rate(self) -> float | None:
        """Cache reads over prompt tokens (input + cache read + cache write)."""
        return self.totals.usage.cache_hit_rate


def overview(repo: Repository, query: ReportQuery) -> Overview:
    """The overview of ``query``'s calls: the daily report (``period_document``'s query) and
    what the page draws from it."""
    rows = period_report(repo, "daily", tz=query.tz, filters=query.filters, cost=query.cost)
    document = report_json(rows, tz=query.tz)
    totals = Totals.total(r.totals for r in rows)
    per_model: dict[str | None, Totals] = {}
    for row in rows:
        for model, part in row.breakdown.items():
            per_model[model] = per_model.get(model, Totals()) + part
    models = sorted(
        per_model.items(), key=lambda kv: (-(kv[1].cost_usd or Decimal(-1)), str(kv[0]))
    )
    dated = [r for r in rows if r.period is not None]
    datasets = [
        {
            "label": "(no model)" if model is None else model,
            "data": [_cost(row.breakdown.get(model)) for row in dated],
        }
        for model, _ in models
    ]
    usage: Usage = totals.usage
    return Overview(
        document=document,
        totals=totals,
        models=models,
        chart={"labels": [r.period for r in dated], "datasets": datasets},
        undated_calls=sum(r.totals.calls for r in rows if r.period is None),
        tokens_by_type=[
            ("Input (uncached)", usage.input_tokens),
            ("Cache read", usage.cache_read_tokens),
            ("Cache write", usage.cache_write_tokens),
            ("Output", usage.output_tokens),
            ("of which reasoning", usage.reasoning_tokens),
        ],
    )


def _cost(totals: Totals | None) -> float | None:
    """A day's cost of a model as the API's JSON gives it (None: no known cost)."""
    return None if totals is None or totals.cost_usd is None else float(totals.cost_usd)


def totals_json(totals: Totals) -> dict[str, Any]:
    """Totals in the reports' JSON shape (what the API's ``totals`` holds)."""
    return totals.to_dict(JSON_FIELDS)


@dataclass(slots=True)
class TopLists:
    """The top agents (the API's tokens report by agent) and the top task runs by inclusive
    cost (from the API's runs list)."""

    agents: dict[str, Any]
    tasks: list[dict[str, Any]]


def top_lists(
    repo: Repository,
    query: ReportQuery,
    *,
    since: datetime | None,
    until: datetime | None,
    agent: str | None,
) -> TopLists:
    """The agents by cost (``tokens_document`` by agent, same filters) and the task runs
    started in the period (done by ``agent`` when given) by inclusive cost, largest first."""
    agents = tokens_document(repo, ["agent"], query)
    agents["rows"] = agents["rows"][:TOP]
    tasks = runs_document(
        repo, kind="task", since=since, until=until, agent=agent, limit=TASKS_SCANNED
    )["runs"]
    tasks.sort(
        key=lambda r: (r["inclusive"]["cost_usd"] is None, -(r["inclusive"]["cost_usd"] or 0))
    )
    return TopLists(agents=agents, tasks=tasks[:TOP])
