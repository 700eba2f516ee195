"""Which calls a report covers: :class:`Filters` (a time range and value filters), the cost
modes, and the ``WHERE`` clause every report reads ``calls`` with.

Shared by the period, sessions and blocks reports (through SQL text, no SQLAlchemy) and the
group-by report. Cost modes (as ccusage's): ``auto`` is the stored cost (the log's own where it
had one, else computed when imported); ``calculate`` recomputes a logged cost from tokens;
``reported`` counts only logged costs, every other call unpriced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = ["COST_MODES", "CostMode", "Filters", "calls_where", "in_values"]

CostMode = Literal["auto", "calculate", "reported"]
COST_MODES: tuple[str, ...] = ("auto", "calculate", "reported")


@dataclass(frozen=True, slots=True)
class Filters:
    """Which calls a report covers: a time range (inclusive) and value filters (any of).

    ``hosts`` selects calls by the machine they were recorded or imported on (``calls.host``,
    set by a remote ledger and ``import --to``); a call with no host matches no host.
    ``branches`` selects calls by the git branch their log line records (``calls.branch``);
    a call with no branch matches no branch."""

    since: datetime | None = None
    until: datetime | None = None
    sources: tuple[str, ...] = ()
    projects: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()


def in_values(column: str, values: Sequence[str], where: list[str], params: list[Any]) -> None:
    """Append ``column IN (?, ...)`` to ``where`` and ``values`` to ``params`` (nothing for no
    values)."""
    if values:
        where.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)


def calls_where(filters: Filters, since: int | None, until: int | None) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause ('' for none) and its parameters that select the calls
    ``filters`` names by source, project, model, agent, host and branch, with
    ``since <= started_at <= until`` (epoch microseconds, None for no bound)."""
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    if until is not None:
        where.append("started_at <= ?")
        params.append(until)
    in_values("source", filters.sources, where, params)
    in_values("project", filters.projects, where, params)
    in_values("model", filters.models, where, params)
    in_values("agent_id", filters.agents, where, params)
    in_values("host", filters.hosts, where, params)
    in_values("branch", filters.branches, where, params)
    return ("WHERE " + " AND ".join(where) if where else ""), params
