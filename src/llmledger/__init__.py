"""llmledger: the books for LLM work.

Record every model call an agent or orchestrator makes, price it with provenance, place it in
the run tree it belongs to (session → plan → section → task → attempt → call), and report what
it cost.
"""

from __future__ import annotations

from llmledger.call import Call
from llmledger.errors import LedgerError, ParseError, StoreError, UsageError
from llmledger.usage import Usage

__version__ = "0.1.0"

__all__ = [
    "Call",
    "LedgerError",
    "ParseError",
    "StoreError",
    "Usage",
    "UsageError",
    "__version__",
]
