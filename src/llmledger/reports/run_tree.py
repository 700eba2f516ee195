"""A run and its subtree, each node with its own and inclusive usage (``llmledger show``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.repository import rollup_of, totals_by_run
from llmledger.store.schema import runs
from llmledger.totals import Totals

__all__ = ["RunNode", "find_run", "load_tree", "recent_runs"]


@dataclass
class RunNode:
    """One run of a tree: its row, its own usage, its subtree's usage, and its children."""

    row: dict[str, Any]
    own: Totals = field(default_factory=Totals)
    inclusive: Totals = field(default_factory=Totals)
    children: list[RunNode] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        """How many attempt runs sit directly under this run."""
        return sum(1 for child in self.children if child.row["kind"] == "attempt")

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``llmledger show --json``."""
        row = self.row
        return {
            "id": row["id"],
            "kind": row["kind"],
            "name": row["name"],
            "key": row["key"],
            "status": row["status"],
            "attempt": row["attempt"],
            "attempts": self.attempts,
            "agent": row["agent_id"],
            "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
            "duration_ms": row["duration_ms"],
            "own": _totals_dict(self.own),
            "inclusive": _totals_dict(self.inclusive),
            "children": [child.to_dict() for child in self.children],
        }


#: The totals of no call, and their JSON: most runs of a large tree have no call of their own.
_NONE = Totals()
_NONE_DICT = _NONE.to_dict()


def _totals_dict(totals: Totals) -> dict[str, Any]:
    return dict(_NONE_DICT) if totals.calls == 0 and totals == _NONE else totals.to_dict()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def find_run(repo: Repository, ref: str) -> str | None:
    """The id of the run ``ref`` names: an id, an external key or a name (the newest run with
    that key, else with that name), or a unique id prefix."""
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        exact = conn.execute(select(runs.c.id).where(runs.c.id == ref)).scalar_one_or_none()
        if exact is not None:
            return str(exact)
        for column in (runs.c.key, runs.c.name):
            match = conn.execute(
                select(runs.c.id).where(column == ref).order_by(runs.c.started_at.desc())
            ).first()
            if match is not None:
                return str(match[0])
        if len(ref) >= 4:
            prefixed = conn.execute(
                select(runs.c.id).where(runs.c.id.startswith(ref, autoescape=True)).limit(2)
            ).all()
            if len(prefixed) == 1:
                return str(prefixed[0][0])
    return None


#: The columns of a :func:`load_tree` node's row: what :meth:`RunNode.to_dict` and ``show``
#: print, and the parent that places it.
_NODE_COLUMNS = [
    runs.c[name]
    for name in (
        "id",
        "parent_id",
        "kind",
        "name",
        "key",
        "status",
        "attempt",
        "agent_id",
        "started_at",
        "finished_at",
        "duration_ms",
    )
]


def load_tree(repo: Repository, run_id: str) -> RunNode | None:
    """The run ``run_id`` with its whole subtree and usage, in two queries."""
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        base = select(runs.c.id).where(runs.c.id == run_id).cte("subtree", recursive=True)
        tree = base.union_all(select(runs.c.id).where(runs.c.parent_id == base.c.id))
        # Only the columns a node shows: a large tree's metadata is not decoded for nothing.
        query = select(*_NODE_COLUMNS).where(runs.c.id.in_(select(tree.c.id)))
        rows = [dict(row) for row in conn.execute(query.order_by(runs.c.started_at)).mappings()]
        own = totals_by_run(conn, select(tree.c.id))
    if not rows:
        return None
    nodes = {row["id"]: RunNode(row=row, own=own.get(row["id"], _NONE)) for row in rows}
    children: dict[str, list[RunNode]] = defaultdict(list)
    for node in nodes.values():
        parent = node.row["parent_id"]
        if parent in nodes and node.row["id"] != run_id:
            children[parent].append(node)

    def settle(node: RunNode) -> Totals:
        node.children = children.get(node.row["id"], [])
        # Totals of no call add nothing: most runs of a large tree have none of their own.
        parts = [t for t in (node.own, *map(settle, node.children)) if t.calls]
        node.inclusive = Totals.total(parts) if parts else _NONE
        return node.inclusive

    root = nodes[run_id]
    settle(root)
    return root


def recent_runs(
    repo: Repository,
    *,
    kind: str | None = None,
    since: datetime | None = None,
    status: str | None = None,
    top_level: bool = False,
    limit: int = 50,
    until: datetime | None = None,
    agent: str | None = None,
) -> list[RunNode]:
    """The newest runs (each without children), with inclusive usage: the roll-up written when
    the run ended, or computed now for a run still going. Runs started from ``since`` to
    ``until`` (inclusive), of ``kind``, with ``status``, done by ``agent`` (the run's agent
    id), without a parent (``top_level``)."""
    query = select(runs).order_by(runs.c.started_at.desc(), runs.c.id).limit(limit)
    if kind:
        query = query.where(runs.c.kind == kind)
    if since is not None:
        query = query.where(runs.c.started_at >= since)
    if until is not None:
        query = query.where(runs.c.started_at <= until)
    if status:
        query = query.where(runs.c.status == status)
    if agent:
        query = query.where(runs.c.agent_id == agent)
    if top_level:
        query = query.where(runs.c.parent_id.is_(None))
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    result = []
    for row in rows:
        if row["status"] == "running" or row["call_count"] is None:
            inclusive = Totals.total(repo.run_usage(row["id"], inclusive=True).values())
        else:
            inclusive = rollup_of(row)
        result.append(RunNode(row=row, inclusive=inclusive))
    return result
