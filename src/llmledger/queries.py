"""The reports' former home, kept importable because docs named ``llmledger.queries``: the
reports now live in :mod:`llmledger.reports` (one module each), re-exported here as before."""

from __future__ import annotations

from llmledger.reports.blocks import Block, blocks
from llmledger.reports.filters import COST_MODES, CostMode, Filters
from llmledger.reports.groups import DIMENSIONS, GroupRow, group_tokens, total_of
from llmledger.reports.periods import PERIODS, period_report
from llmledger.reports.sessions import sessions_report
from llmledger.reports.sums import ReportRow

__all__ = [
    "COST_MODES",
    "DIMENSIONS",
    "PERIODS",
    "Block",
    "CostMode",
    "Filters",
    "GroupRow",
    "ReportRow",
    "blocks",
    "group_tokens",
    "period_report",
    "sessions_report",
    "total_of",
]
