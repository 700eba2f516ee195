"""Writing to an llmledger service: the spool (a local SQLite queue that survives a killed
process), the sender (a background thread that delivers it in order) and the writer a remote
``Ledger`` uses. See docs/service.md."""

from __future__ import annotations

from llmledger.remote.client import RemoteError, RemoteWriter, is_remote_url, spool_path_for
from llmledger.remote.sender import Sender
from llmledger.remote.spool import Spool, SpoolStatus

__all__ = [
    "RemoteError",
    "RemoteWriter",
    "Sender",
    "Spool",
    "SpoolStatus",
    "is_remote_url",
    "spool_path_for",
]
