"""The ledger store: tables, migrations, engines for SQLite and PostgreSQL, the repository.

The names below load their modules (and SQLAlchemy) on first use, so that the light modules of
this package (``urls``, ``rollup``, ``sqlite_reader``) stay cheap to import for
the reports' fast path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmledger._lazy import lazy_getattr

if TYPE_CHECKING:
    from llmledger.store.engine import (
        check_known,
        current_revision,
        ensure_current,
        head_revision,
        open_engine,
        upgrade,
    )
    from llmledger.store.repository import Repository
    from llmledger.store.urls import default_url, resolve_url

__all__ = [
    "BUSY_TIMEOUT_MS",
    "HEAD_REVISION",
    "Repository",
    "check_known",
    "current_revision",
    "default_url",
    "ensure_current",
    "head_revision",
    "open_engine",
    "open_repository",
    "resolve_url",
    "upgrade",
]

#: How long a SQLite connection waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 60_000
#: The newest migration; a test keeps it equal to what Alembic finds, so that opening a current
#: ledger needs one query and no Alembic import.
HEAD_REVISION = "0011"

_LAZY = {
    "Repository": "llmledger.store.repository",
    "check_known": "llmledger.store.engine",
    "current_revision": "llmledger.store.engine",
    "ensure_current": "llmledger.store.engine",
    "head_revision": "llmledger.store.engine",
    "open_engine": "llmledger.store.engine",
    "upgrade": "llmledger.store.engine",
    "default_url": "llmledger.store.urls",
    "resolve_url": "llmledger.store.urls",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def open_repository(url: str | None = None, *, migrate: bool = True) -> Repository:
    """Open the ledger at ``url`` (see :func:`resolve_url`), migrating it to the newest
    schema first unless ``migrate`` is False."""
    from llmledger.store.engine import ensure_current, open_engine
    from llmledger.store.repository import Repository

    engine = open_engine(url)
    if migrate:
        try:
            ensure_current(engine)
        except BaseException:
            engine.dispose()  # the caller never sees it
            raise
    return Repository(engine)
