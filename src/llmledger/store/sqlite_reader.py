"""Reading a SQLite ledger with the standard library alone: the reports' fast path.

A report on a current ledger needs a few small queries, and importing SQLAlchemy costs more
than all of them; :func:`open_reader` gives a :class:`SqliteReader` when the ledger is a
SQLite file at the newest revision, and None otherwise (then the caller opens the full
repository, which creates or migrates the ledger).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from llmledger.errors import StoreError
from llmledger.store import BUSY_TIMEOUT_MS, HEAD_REVISION
from llmledger.store.urls import resolve_url, sqlite_path

__all__ = ["Reader", "SqliteReader", "open_reader"]


class Reader(Protocol):
    """What the reports read through: a dialect name and read-only SQL with ``?``
    placeholders. :class:`~llmledger.store.Repository` is one too."""

    @property
    def dialect(self) -> str: ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class SqliteReader:
    """A read-only connection to a SQLite ledger file."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        # A read-only URI never creates the file and never takes the write lock.
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL query with ``?`` placeholders; :class:`StoreError` when the
        ledger cannot be read."""
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the ledger at {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def open_reader(url: str | None = None) -> SqliteReader | None:
    """A reader for the ledger at ``url`` (see :func:`resolve_url`) when it is an existing
    SQLite file at the newest revision; None for anything else."""
    path = sqlite_path(resolve_url(url))
    if path is None or not os.path.isfile(path):
        return None
    try:
        reader = SqliteReader(path)
    except sqlite3.Error:
        return None
    try:
        current = reader.fetch("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    except StoreError:  # not a ledger yet, or not a database at all
        current = False
    if not current:
        reader.close()
        return None
    return reader
