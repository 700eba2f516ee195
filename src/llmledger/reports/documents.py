"""The ``--json`` documents of the reports (docs/reports.md), which the HTTP service will return
as they are: a period or sessions report, the blocks, the group-by rows. Totals in each take the
one shape :data:`~llmledger.totals.JSON_FIELDS`; times are ISO 8601 in the report's zone.

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
    from llmledger.reports.sums import ReportRow

__all__ = ["block_json", "iso_in", "report_json", "tokens_json"]


def iso_in(at: datetime | None, tz: tzinfo) -> str | None:
    """``at`` as ISO 8601 in ``tz`` (None stays None)."""
    return None if at is None else at.astimezone(tz).isoformat()


def report_json(
    rows: Sequence[ReportRow], *, sessions: bool = False, tz: tzinfo = UTC
) -> dict[str, Any]:
    """The ``--json`` document of a period or sessions report."""
    out = []
    for row in rows:
        item: dict[str, Any] = {"period": row.period, **row.totals.to_dict(JSON_FIELDS)}
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
        out.append(item)
    return {"rows": out, "totals": Totals.total(r.totals for r in rows).to_dict(JSON_FIELDS)}


def block_json(block: Block, now: datetime, tz: tzinfo) -> dict[str, Any]:
    """One block of ``blocks --json``: its window, state, totals, burn rate and projection."""
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
