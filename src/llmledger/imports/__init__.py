"""Incremental import of the logs coding agents write (Claude Code, Codex, Gemini CLI).

>>> summary = import_logs(repo)                 # every agent, from where they write
>>> summary.calls_added, summary.duplicates, summary.skipped

The first import reads every file; the ledger's ``import_state`` table then remembers, per
path, the device, inode, size, mtime, the offset read up to (the last complete newline) and a
hash of the first bytes. The next import stats each file (``plan.py`` decides): unchanged
files are not opened; grown files are read from the saved offset; a truncated (size < offset)
or replaced (other inode, other first bytes) file is read again from the start, which changes
nothing already stored because every call has a dedupe key.

Copies of a call are settled as ccusage v20 does (DESIGN §4 rule 5; ccusage.md §2): the same
dedupe key (message id + request id, or the message id alone) keeps the copy with the larger
token total; a sidechain copy of a message id seen with another request id yields to the
parent copy. Within the files being read this happens in memory; against calls imported
before, the ``calls.message_id`` index finds the stored copies. Everything is written in one
transaction, so an interrupted import leaves the ledger as it was.

The modules, in the order an import runs them: ``logfiles`` (where the logs are), ``plan``
(what is new in them), ``workers`` (starting the reads), ``read`` (reading one file, in a
worker, into ``rows``; ``fastpath`` for the usual line), ``dedupe`` (settling copies),
``writer`` (writing the rows), ``pipeline`` (all of it, in order). The names below load
their modules on first use: the planning and the reads load no SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmledger._lazy import lazy_getattr

if TYPE_CHECKING:
    from llmledger.agents import AGENT_SOURCES, AGENTS, SOURCE_OF
    from llmledger.imports.dedupe import drop_imported_copies
    from llmledger.imports.logfiles import LogFile, discover
    from llmledger.imports.pipeline import import_logs, run_import
    from llmledger.imports.plan import FilePlan, plan_import
    from llmledger.imports.summary import ImportSummary
    from llmledger.imports.workers import forget_in_children

__all__ = [
    "AGENTS",
    "AGENT_SOURCES",
    "SOURCE_OF",
    "FilePlan",
    "ImportSummary",
    "LogFile",
    "discover",
    "drop_imported_copies",
    "forget_in_children",
    "import_logs",
    "plan_import",
    "run_import",
]

_LAZY = {
    "AGENTS": "llmledger.agents",
    "AGENT_SOURCES": "llmledger.agents",
    "SOURCE_OF": "llmledger.agents",
    "LogFile": "llmledger.imports.logfiles",
    "discover": "llmledger.imports.logfiles",
    "FilePlan": "llmledger.imports.plan",
    "plan_import": "llmledger.imports.plan",
    "ImportSummary": "llmledger.imports.summary",
    "import_logs": "llmledger.imports.pipeline",
    "run_import": "llmledger.imports.pipeline",
    "forget_in_children": "llmledger.imports.workers",
    "drop_imported_copies": "llmledger.imports.dedupe",
}

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
