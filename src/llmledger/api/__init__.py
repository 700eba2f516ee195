"""The HTTP service (``llmledger serve``): a FastAPI app over the same store as the CLI.

:func:`create_app` builds it; ``ingest`` holds the idempotent writes, ``reads`` the reads that
return the CLI's ``--json`` documents, ``auth`` the API keys' scopes.
"""

from __future__ import annotations

from llmledger.api.app import create_app

__all__ = ["create_app"]
