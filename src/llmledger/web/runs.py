"""The runs pages' data: a page of the API's runs list (``GET /v1/runs``), a run's tree (``GET
/v1/runs/{ref}``), and what no API read answers yet — the calls of a run's subtree and its
status timeline (``task_status_events``), read here by the run ids of that subtree."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select

from llmledger.reports.documents import runs_document
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import calls, runs, task_status_events

__all__ = ["MAX_LISTED", "RunsPage", "flatten", "run_calls", "runs_page", "status_timeline"]

#: The most calls and status events a run page lists.
MAX_LISTED = 500


@dataclass(slots=True)
class RunsPage:
    """One page of the runs list: the API's rows for it, and whether more follow."""

    rows: list[dict[str, Any]]
    page: int
    size: int
    more: bool
    limit: int


def runs_page(
    repo: Repository,
    *,
    page: int,
    size: int,
    kind: str | None,
    status: str | None,
    since: datetime | None,
    agent: str | None,
    max_runs: int,
) -> RunsPage:
    """Page ``page`` (from 1) of ``size`` runs, newest first: the slice of the API's answer to
    ``GET /v1/runs?limit=page*size`` (one more, to know whether a next page exists)."""
    limit = min(page * size + 1, max_runs)
    rows = runs_document(repo, kind=kind, status=status, since=since, agent=agent, limit=limit)[
        "runs"
    ]
    start = (page - 1) * size
    return RunsPage(rows[start : start + size], page, size, len(rows) > start + size, limit)


def _subtree(run_id: str) -> Select[Any]:
    base = select(runs.c.id).where(runs.c.id == run_id).cte("subtree", recursive=True)
    return select(base.union_all(select(runs.c.id).where(runs.c.parent_id == base.c.id)).c.id)


def run_calls(repo: Repository, run_id: str) -> tuple[list[dict[str, Any]], int]:
    """The first :data:`MAX_LISTED` calls of the run's subtree (oldest first) and how many
    there are."""
    where = calls.c.run_id.in_(_subtree(run_id))
    columns = [
        calls.c[name]
        for name in (
            "run_id",
            "started_at",
            "source",
            "provider",
            "model",
            "status",
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "cost_status",
            "price_version",
            "duration_ms",
        )
    ]
    query = select(*columns).where(where).order_by(calls.c.started_at, calls.c.id)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = [dict(r) for r in conn.execute(query.limit(MAX_LISTED)).mappings()]
        count = conn.execute(select(func.count()).select_from(calls).where(where)).scalar_one()
    return rows, int(count)


def status_timeline(repo: Repository, run_id: str, key: str | None) -> list[dict[str, Any]]:
    """The status events of the run's subtree, and of its task key when it has one, oldest
    first (at most :data:`MAX_LISTED`)."""
    event = task_status_events.c
    match: ColumnElement[bool] = event.run_id.in_(_subtree(run_id))
    if key is not None:
        match = or_(match, event.task_key == key)
    query = (
        select(
            event.at,
            event.task_key,
            event.from_status,
            event.to_status,
            event.run_id,
            event.agent_id,
            event.command_name,
        )
        .where(match)
        .order_by(event.at, event.id)
        .limit(MAX_LISTED)
    )
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def flatten(node: dict[str, Any], depth: int = 0) -> Iterator[dict[str, Any]]:
    """The nodes of a ``show`` document's tree, depth first, each with its ``depth`` and its
    own and inclusive totals as flat ``own_*`` / ``inclusive_*`` columns (the run's CSV)."""
    row = {k: v for k, v in node.items() if k not in ("children", "own", "inclusive")}
    row["depth"] = depth
    for part in ("own", "inclusive"):
        row.update({f"{part}_{k}": v for k, v in node[part].items()})
    yield row
    for child in node["children"]:
        yield from flatten(child, depth + 1)
