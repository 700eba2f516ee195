"""Every aggregation a surface shows, as queries over the ledger.

- :mod:`~llmledger.reports.filters` — which calls a report covers (:class:`Filters`, cost modes)
- :mod:`~llmledger.reports.sums` — the sums reports read and :class:`ReportRow`
- :mod:`~llmledger.reports.periods` — daily, weekly and monthly reports (from the call roll-up)
- :mod:`~llmledger.reports.sessions` — totals per agent session
- :mod:`~llmledger.reports.blocks` — 5-hour billing windows, as ccusage defines them
- :mod:`~llmledger.reports.groups` — tokens and cost grouped by any dimensions
- :mod:`~llmledger.reports.run_tree` — a run's subtree with own and inclusive usage

The period, sessions and blocks reports read through the
:class:`~llmledger.store.sqlite_reader.Reader` protocol and import no SQLAlchemy, so a report on
a current SQLite ledger starts quickly; the names below are therefore loaded on first use. The
blocks report's function is not among them, since its name is its module's: import it from
:mod:`llmledger.reports.blocks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmledger._lazy import lazy_getattr

if TYPE_CHECKING:
    from llmledger.reports.blocks import Block
    from llmledger.reports.filters import COST_MODES, CostMode, Filters
    from llmledger.reports.groups import DIMENSIONS, GroupRow, group_tokens, total_of
    from llmledger.reports.periods import PERIODS, period_report
    from llmledger.reports.run_tree import RunNode, find_run, load_tree, recent_runs
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
    "RunNode",
    "find_run",
    "group_tokens",
    "load_tree",
    "period_report",
    "recent_runs",
    "sessions_report",
    "total_of",
]

_LAZY = {
    "Block": "llmledger.reports.blocks",
    "COST_MODES": "llmledger.reports.filters",
    "CostMode": "llmledger.reports.filters",
    "Filters": "llmledger.reports.filters",
    "DIMENSIONS": "llmledger.reports.groups",
    "GroupRow": "llmledger.reports.groups",
    "group_tokens": "llmledger.reports.groups",
    "total_of": "llmledger.reports.groups",
    "PERIODS": "llmledger.reports.periods",
    "period_report": "llmledger.reports.periods",
    "RunNode": "llmledger.reports.run_tree",
    "find_run": "llmledger.reports.run_tree",
    "load_tree": "llmledger.reports.run_tree",
    "recent_runs": "llmledger.reports.run_tree",
    "sessions_report": "llmledger.reports.sessions",
    "ReportRow": "llmledger.reports.sums",
}

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
