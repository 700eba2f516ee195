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
from urllib.parse import quote

from llmledger.errors import StoreError
from llmledger.store import BUSY_TIMEOUT_MS, HEAD_REVISION
from llmledger.store.urls import resolve_url, sqlite_path

__all__ = [
    "Reader",
    "SqliteReader",
    "open_reader",
    "read_only_sqlite_file",
    "sqlite_read_only_uri",
]


def read_only_sqlite_file(path: str) -> bool:
    """Whether the SQLite file at ``path`` exists and this process may not write it: the file,
    or its directory (where SQLite keeps its journal, ``-wal`` and ``-shm`` files), is
    read-only to us. Such a ledger is opened read-only."""
    if not os.path.exists(path):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    return not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))


def sqlite_read_only_uri(path: str) -> str:
    """The ``file:`` URI that opens the SQLite file at ``path`` read-only.

    A WAL-mode file needs its ``-shm`` file, which SQLite cannot create in a directory we may
    not write: when no side file exists there, no connection has the file open for writing
    (each would have made one) and the file holds every committed page, so it is opened
    ``immutable`` (no locks, no side files; a writer starting while it is read is not seen)."""
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(folder, os.W_OK) and not any(
        os.path.exists(path + side) for side in ("-wal", "-shm", "-journal")
    ):
        uri += "&immutable=1"
    return uri


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
        self._conn = sqlite3.connect(sqlite_read_only_uri(path), uri=True)
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
