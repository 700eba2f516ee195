"""llmledger: the books for LLM work.

Record every model call an agent or orchestrator makes, price it with provenance, place it in
the run tree it belongs to (session → plan → section → task → attempt → call), and report what
it cost::

    from llmledger import Ledger

    ledger = Ledger()                      # SQLite in your data directory, or LLMLEDGER_DB
    with ledger.run("task", "Fix off-by-one", key="1.1") as task:
        response = client.chat.completions.create(...)
        ledger.record(response)            # any payload llmledger.sources understands
    print(task.totals().cost_usd)

The heavier parts (the store, pricing, parsers) are imported on first use, so ``import
llmledger`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmledger._lazy import lazy_getattr

if TYPE_CHECKING:
    from llmledger.call import Call
    from llmledger.errors import BudgetExceeded, LedgerError, ParseError, StoreError, UsageError
    from llmledger.estimate import Estimate, estimate_cost, should_warn_cost
    from llmledger.ledger import Ledger, Run
    from llmledger.pricing import Price, Pricer
    from llmledger.sources import Parsed, detect, parse, parse_file
    from llmledger.totals import Totals
    from llmledger.usage import Usage

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "Call",
    "Estimate",
    "Ledger",
    "LedgerError",
    "ParseError",
    "Parsed",
    "Price",
    "Pricer",
    "Run",
    "StoreError",
    "Totals",
    "Usage",
    "UsageError",
    "__version__",
    "detect",
    "estimate_cost",
    "parse",
    "parse_file",
    "should_warn_cost",
]

# Even the errors and totals load on first use: the status line (cli/status_hook.py) runs
# after every message of Claude Code and needs neither (their dataclasses cost it ~15 ms).
_LAZY = {
    "BudgetExceeded": "llmledger.errors",
    "LedgerError": "llmledger.errors",
    "ParseError": "llmledger.errors",
    "StoreError": "llmledger.errors",
    "UsageError": "llmledger.errors",
    "Totals": "llmledger.totals",
    "Usage": "llmledger.usage",
    "Call": "llmledger.call",
    "Ledger": "llmledger.ledger",
    "Run": "llmledger.ledger",
    "Price": "llmledger.pricing",
    "Pricer": "llmledger.pricing",
    "Estimate": "llmledger.estimate",
    "estimate_cost": "llmledger.estimate",
    "should_warn_cost": "llmledger.estimate",
    "Parsed": "llmledger.sources",
    "detect": "llmledger.sources",
    "parse": "llmledger.sources",
    "parse_file": "llmledger.sources",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
