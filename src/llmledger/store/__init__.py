"""The ledger store: tables, migrations, engines for SQLite and PostgreSQL, the repository."""

from __future__ import annotations

from llmledger.store.engine import (
    current_revision,
    default_url,
    ensure_current,
    head_revision,
    open_engine,
    resolve_url,
    upgrade,
)
from llmledger.store.repository import Repository

__all__ = [
    "Repository",
    "current_revision",
    "default_url",
    "head_revision",
    "open_engine",
    "open_repository",
    "resolve_url",
    "upgrade",
]


def open_repository(url: str | None = None, *, migrate: bool = True) -> Repository:
    """Open the ledger at ``url`` (see :func:`resolve_url`), migrating it to the newest
    schema first unless ``migrate`` is False."""
    engine = open_engine(url)
    if migrate:
        ensure_current(engine)
    return Repository(engine)
