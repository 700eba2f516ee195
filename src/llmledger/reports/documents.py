"""The ``--json`` documents (docs/reports.md), which the HTTP service returns as they are: a
period or sessions report, the blocks, the group-by rows, a run's tree and the list of runs.
Report totals take the one shape :data:`~llmledger.totals.JSON_FIELDS` (runs keep
:data:`~llmledger.totals.RUN_FIELDS`); report times are ISO 8601 in the report's zone.

The ``*_json`` functions build a document from what a report returned (the CLI prints its
tables from the same rows); the ``*_document`` functions answer a question whole, from the
ledger and a :class:`~llmledger.reports.options.ReportQuery` (the service calls them).
``llmledger schema`` and the service's OpenAPI describe each document
(:mod:`llmledger.api.read_models`).

Cheap to import (no SQLAlchemy): the fast reports print through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from llmledger.totals import JSON_FIELDS, Totals

if TYPE_CHECKING:
    from llmledger.reports.blocks import Block
    from llmledger.reports.groups import GroupRow
    from llmledger.reports.options import ReportQuery
    from llmledger.reports.run_tree import RunNode
    from llmledger.reports.sums import ReportRow
    from llmledger.store import Repository
    from llmledger.store.sqlite_reader import Reader

__all__ = [
    "block_json",
    "blocks_document",
    "blocks_json",
    "iso_in",
    "period_document",
    "report_json",
    "run_document",
    "run_json",
    "runs_document",
    "runs_json",
    "sessions_document",
    "tokens_document",
    "tokens_json",
]


def iso_in(at: datetime | None, tz: tzinfo) -> str | None:
    """``at`` as ISO 8601 in ``tz`` (None stays None)."""
    return None if at is None else at.astimezone(tz).isoformat()


def report_json(
    rows: Sequence[ReportRow],
    *,
    sessions: bool = False,
    tz: tzinfo = UTC,
    by_project: bool = False,
) -> dict[str, Any]:
    """The ``--json`` document of a period or sessions report (``by_project``: a period
    report's rows per period and project, each with its ``project``)."""
    out = []
    for row in rows:
        item: dict[str, Any] = {"period": row.period}
        if by_project:
            item["project"] = row.project
        item.update(row.totals.to_dict(JSON_FIELDS))
        item["models"] = row.models
        item["breakdown"] = [
            {"model": model, **t.to_dict(JSON_FIELDS)}
            for model, t in sorted(row.breakdown.items(), key=lambda kv: str(kv[0]))
        ]
        if sessions:
            item["session_id"] = row.session_id
            item["project"] = row.project
            item["first_at"] = iso_in(row.first_at, tz)
            item["last_at"] = iso_in(row.last_at, tz)
            item["agents"] = [
                {"subagent": sub, "subagent_type": kind, **t.to_dict(JSON_FIELDS)}
                for (sub, kind), t in sorted(row.agents.items(), key=_main_first)
            ]
        out.append(item)
    return {"rows": out, "totals": Totals.total(r.totals for r in rows).to_dict(JSON_FIELDS)}


def _main_first(item: tuple[tuple[str | None, str | None], Totals]) -> tuple[bool, str]:
    """The main thread (no subagent) first, then the subagents by id."""
    sub = item[0][0]
    return sub is not None, sub or ""


def block_json(block: Block, now: datetime, tz: tzinfo) -> dict[str, Any]:
    """One block of ``blocks --json``: its window, state, totals, burn rate, projection and
    token limit status."""
    return {
        "start": iso_in(block.start, tz),
        "end": iso_in(block.end, tz),
        "first_at": iso_in(block.first_at, tz),
        "last_at": iso_in(block.last_at, tz),
        "is_gap": block.is_gap,
        "is_active": block.is_active,
        "entries": block.entries,
        "models": block.models,
        **block.totals.to_dict(JSON_FIELDS),
        "burn_rate": block.burn_rate(),
        "projection": block.projection(now),
        "token_limit": block.limit_status(now),
    }


def tokens_json(dimensions: Sequence[str], rows: Sequence[GroupRow]) -> dict[str, Any]:
    """The ``tokens --json`` document: the dimensions, a row per combination of their values
    (with the summed call duration), and the totals."""
    return {
        "group_by": list(dimensions),
        "rows": [
            {**r.key, **r.totals.to_dict(JSON_FIELDS), "duration_ms": r.duration_ms} for r in rows
        ],
        "totals": Totals.total(r.totals for r in rows).to_dict(JSON_FIELDS),
    }


def blocks_json(blocks: Sequence[Block], now: datetime, tz: tzinfo) -> dict[str, Any]:
    """The ``blocks --json`` document: ``{"blocks": [...]}``, each as :func:`block_json`."""
    return {"blocks": [block_json(b, now, tz) for b in blocks]}


def run_json(tree: RunNode) -> dict[str, Any]:
    """The ``show --json`` document: ``{"run": node}``, each node with its own and inclusive
    totals and its children, recursively."""
    return {"run": tree.to_dict()}


def runs_json(nodes: Sequence[RunNode]) -> dict[str, Any]:
    """The ``runs --json`` document: ``{"runs": [...]}``, each run as in ``show`` without
    its children, own usage and attempt count (inclusive totals only)."""
    rows = []
    for node in nodes:
        data = node.to_dict()
        for name in ("children", "own", "attempts"):
            data.pop(name)
        rows.append(data)
    return {"runs": rows}


# -- questions answered whole ------------------------------------------------------------------


def period_document(
    reader: Reader, kind: str, query: ReportQuery, *, by_project: bool = False
) -> dict[str, Any]:
    """The ``daily``/``weekly``/``monthly --json`` document (``kind``) for ``query``
    (``--by-project``: rows per period and project)."""
    from llmledger.reports.periods import period_report

    rows = period_report(
        reader, kind, tz=query.tz, filters=query.filters, cost=query.cost, by_project=by_project
    )
    return report_json(rows, tz=query.tz, by_project=by_project)


def sessions_document(reader: Reader, query: ReportQuery) -> dict[str, Any]:
    """The ``sessions --json`` document for ``query``."""
    from llmledger.reports.sessions import sessions_report

    rows = sessions_report(reader, filters=query.filters, cost=query.cost)
    return report_json(rows, sessions=True, tz=query.tz)


def blocks_document(
    reader: Reader,
    query: ReportQuery,
    *,
    hours: float = 5,
    active: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``blocks --json`` document for ``query``: ``hours``-long blocks (checked by
    :func:`~llmledger.reports.options.block_hours`), only the active one with ``active``;
    the active block's state and projection as of ``now`` (default: the current time)."""
    from llmledger.reports.blocks import blocks

    at = now or datetime.now(UTC)
    found = blocks(reader, filters=query.filters, cost=query.cost, hours=hours, now=at)
    if active:
        found = [b for b in found if b.is_active]
    return blocks_json(found, at, query.tz)


def tokens_document(
    repo: Repository, dimensions: Sequence[str], query: ReportQuery
) -> dict[str, Any]:
    """The ``tokens --group-by ... --json`` document for ``query`` (``dimensions`` checked by
    :func:`~llmledger.reports.options.group_by_dimensions`)."""
    from llmledger.reports.groups import group_tokens

    rows = group_tokens(repo, dimensions, tz=query.tz, filters=query.filters, cost=query.cost)
    return tokens_json(dimensions, rows)


def run_document(repo: Repository, ref: str) -> dict[str, Any] | None:
    """The ``show REF --json`` document: the run ``ref`` names (an id, an external key, a
    name, or a unique id prefix) with its subtree; None when no run matches."""
    from llmledger.reports.run_tree import find_run, load_tree

    run_id = find_run(repo, ref)
    tree = load_tree(repo, run_id) if run_id is not None else None
    return None if tree is None else run_json(tree)


def runs_document(
    repo: Repository,
    *,
    kind: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str | None = None,
    top_level: bool = False,
    limit: int = 50,
) -> dict[str, Any]:
    """The ``runs --json`` document: the newest ``limit`` runs that match, newest first."""
    from llmledger.reports.run_tree import recent_runs

    nodes = recent_runs(
        repo,
        kind=kind,
        status=status,
        since=since,
        until=until,
        agent=agent,
        top_level=top_level,
        limit=limit,
    )
    return runs_json(nodes)
