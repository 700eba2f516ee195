"""Opening the ledger database: URL resolution, engine setup and migrations.

SQLite is the embedded default (a file in the user's data directory, WAL mode, a busy timeout,
``BEGIN IMMEDIATE`` for writes so that concurrent writers wait instead of failing).
PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    event,
    inspect,
    make_url,
    text,
)
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from llmledger._private import create_private_file, make_private_dirs
from llmledger.errors import StoreError
from llmledger.store import BUSY_TIMEOUT_MS, HEAD_REVISION
from llmledger.store.sqlite_reader import read_only_sqlite_file, sqlite_read_only_uri
from llmledger.store.urls import default_url, resolve_url

__all__ = [
    "BUSY_TIMEOUT_MS",
    "HEAD_REVISION",
    "READ_ONLY",
    "NewerLedgerError",
    "check_known",
    "current_revision",
    "default_url",
    "downgrade",
    "ensure_current",
    "head_revision",
    "is_read_only",
    "open_engine",
    "resolve_url",
    "rollback_journal",
    "upgrade",
]

_MIGRATIONS = Path(__file__).with_name("migrations")
#: Execution option for connections that only read: they skip SQLite's write lock.
READ_ONLY = {"llmledger_read_only": True}


def open_engine(url: str | None = None, *, read_only: bool | None = None, **kwargs: Any) -> Engine:
    """Create an engine for the ledger at ``url`` (see :func:`resolve_url`).

    A new SQLite file is created readable by its owner only (0600), in directories created
    0700 when missing. A SQLite file this process may not write (see
    :func:`~llmledger.store.sqlite_reader.read_only_sqlite_file`) is opened read-only, as when
    ``read_only`` is true: reads work, writes fail, nothing is created or converted. Raises
    :class:`StoreError` for a URL that is not SQLite or PostgreSQL.
    """
    resolved = resolve_url(url)
    try:
        parsed = make_url(resolved)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {resolved!r} ({exc})") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = str(Path(database).expanduser())
            if read_only is None:
                read_only = read_only_sqlite_file(path)
            if read_only:
                # Through a creator: SQLAlchemy's URL would unquote the file: URI's path.
                uri = sqlite_read_only_uri(path)
                kwargs.setdefault(
                    "creator", lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
                )
                kwargs["execution_options"] = {**kwargs.get("execution_options", {}), **READ_ONLY}
            elif not os.path.exists(path):
                try:
                    make_private_dirs(Path(path).parent)
                    # SQLite gives the -wal, -shm and journal files the database file's mode.
                    create_private_file(path)
                except OSError as exc:
                    raise StoreError(f"cannot create the ledger at {path}: {exc}") from exc
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine, read_only=bool(read_only))
        return engine
    if backend == "postgresql":
        # A server that never answers must end in an error (a 503 from the service), not hang.
        if "connect_timeout" not in parsed.query:
            kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 10)
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    if backend in ("http", "https"):
        raise StoreError(
            f"{resolved!r} is a llmledger service, not a database: remote ledgers, "
            "`llmledger import` and `llmledger spool` write to it; reports, `runs` and `show` "
            "read a database (--db sqlite:///PATH or postgresql+psycopg://...), or ask the "
            "service: GET /v1/reports/daily, /v1/runs/ID (docs/service.md)"
        )
    raise StoreError(
        f"unsupported database {backend!r} in {resolved!r}: use sqlite:///PATH or "
        "postgresql+psycopg://USER@HOST/DB"
    )


_PAGE_SIZE = 16384


def is_read_only(engine: Engine) -> bool:
    """Whether ``engine`` opened its SQLite file read-only (see :func:`open_engine`)."""
    return engine.dialect.name == "sqlite" and bool(
        engine.get_execution_options().get("llmledger_read_only")
    )


def _configure_sqlite(engine: Engine, *, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not read_only:  # a reader takes the file as it is
            # A new file only (SQLite keeps an existing file's): larger pages make the first
            # import's bulk load about a tenth cheaper, and the reports read as fast.
            cursor.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
            _use_wal(dbapi_conn)
            # NORMAL in WAL mode survives a crash of the process; only power loss can cost the
            # last commits.
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front, so a writer waits (busy_timeout) instead of
        # failing with "database is locked" when it upgrades a read lock.
        if read_only or conn.get_execution_options().get("llmledger_read_only"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting within the busy timeout for a connection that holds
    it in the rollback journal (a first import's bulk load, see :func:`rollback_journal`).

    SQLite does not wait to switch: holding a read lock, a connection that needs the write
    lock another one holds fails at once ("database is locked"), busy timeout or not. So the
    mode is read first (a read lock, which does wait) and left alone when it is WAL already;
    else the switch is tried, and after a refusal ``BEGIN IMMEDIATE`` waits (busy timeout)
    until the writer is done before the next try."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or left_ms <= 0:
                raise
        conn.execute(f"PRAGMA busy_timeout = {left_ms}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@contextmanager
def rollback_journal(conn: Connection, wanted: bool = True) -> Iterator[bool]:
    """Around a bulk load into a new SQLite ledger: switch the file from WAL to the rollback
    journal, and back to WAL afterwards. WAL writes every page twice (into the log, then into
    the database at the checkpoint); a load that starts from an empty table has nothing to
    journal, so its pages are written once. Call it outside a transaction.

    Yields whether it switched: not for PostgreSQL, not when ``wanted`` is false, and not when
    another connection has the file open (it does not wait for them). While it is switched,
    connections that open the file wait (busy timeout) instead of reading alongside."""
    raw = conn.connection.driver_connection if conn.dialect.name == "sqlite" else None
    if not wanted or raw is None or conn.in_transaction():
        yield False
        return
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        mode = raw.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    except sqlite3.OperationalError:  # another connection has the file open
        mode = "wal"
    finally:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if mode != "delete":
        yield False
        return
    # FULL: in the rollback journal, NORMAL could lose the database to a power cut mid-commit.
    raw.execute("PRAGMA synchronous = FULL")
    try:
        yield True
    finally:
        try:
            raw.execute("PRAGMA synchronous = NORMAL")
            raw.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:
            # Someone is waiting to open the file: its own connect switches it to WAL; this
            # connection leaves the pool rather than stay in the other mode.
            conn.invalidate()


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision this version of llmledger knows."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    try:
        with engine.connect().execution_options(**READ_ONLY) as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            return None if row is None else str(row[0])
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the ledger at {engine.url!r}: {exc}") from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest)."""
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` ("base" empties it)."""
    _migrate(engine, "downgrade", revision)


class NewerLedgerError(StoreError):
    """The ledger is at a revision this llmledger does not know: a newer one wrote it."""

    def __init__(self, revision: str) -> None:
        self.revision = revision
        super().__init__(
            f"this ledger was written by a newer llmledger (revision {revision}); upgrade llmledger"
        )


def check_known(revision: str | None) -> None:
    """Raise :class:`NewerLedgerError` when ``revision`` (the database's) is not one of this
    llmledger's migrations."""
    if revision is None or revision == HEAD_REVISION:
        return
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(_MIGRATIONS))
    if revision not in {rev.revision for rev in script.walk_revisions()}:
        raise NewerLedgerError(revision)


def _migrate(engine: Engine, direction: str, revision: str) -> None:
    from alembic import command

    check_known(current_revision(engine))
    if is_read_only(engine):
        raise StoreError(
            f"cannot migrate the ledger at {engine.url.database}: it is read-only to us (the "
            "file or its directory); run this as a user who may write both"
        )
    try:
        with engine.begin() as conn:
            config = _alembic_config(conn)
            getattr(command, direction)(config, revision)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot migrate the ledger at {engine.url!r}: {exc}") from exc


def ensure_current(engine: Engine) -> None:
    """Upgrade the database to head if it is behind (a no-op check when it is current).

    An empty database gets the head schema at once, as the migrations would leave it
    (``tests/test_migrations.py`` holds the two alike), without loading Alembic: a first
    run creates its ledger while the import's workers start."""
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    check_known(revision)
    if is_read_only(engine):
        raise StoreError(
            f"the ledger at {engine.url.database} is read-only to us and "
            + ("holds no ledger yet" if revision is None else f"is at revision {revision}")
            + f"; this llmledger needs revision {HEAD_REVISION}: run `llmledger db upgrade` "
            "once as a user who may write it (the file and its directory)"
        )
    if revision is None and _create_empty(engine):
        return
    upgrade(engine)


def _create_empty(engine: Engine) -> bool:
    from llmledger.store import hour_rollup, metrics_rollup, rollup
    from llmledger.store.schema import metadata

    try:
        with engine.begin() as conn:
            # Asked inside the write transaction: a process creating it meanwhile has won.
            if inspect(conn).get_table_names():
                return False
            metadata.create_all(conn)
            rollup.create_triggers(conn)
            hour_rollup.create_triggers(conn)
            metrics_rollup.create_triggers(conn)
            _ALEMBIC_VERSION.create(conn)
            conn.execute(_ALEMBIC_VERSION.insert().values(version_num=HEAD_REVISION))
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot create the ledger at {engine.url!r}: {exc}") from exc
    return True


#: Alembic's own table, as it creates it.
_ALEMBIC_VERSION = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
