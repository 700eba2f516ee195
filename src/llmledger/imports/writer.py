"""Writing an import's rows: large batches in the import's transaction (one statement each on
PostgreSQL, an executemany on SQLite), the session runs the rows belong to, the bulk load of
an empty SQLite ledger (indexes dropped and built once, the roll-up summed from the rows on a
thread) and the import state of each file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Index, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from llmledger.agents import SOURCE_OF
from llmledger.imports.plan import FilePlan
from llmledger.imports.read import FileResult
from llmledger.imports.rows import (
    DEDUPE_KEY,
    PROJECT,
    ROW_AT,
    ROW_COLUMNS,
    RUN_ID,
    SESSION_ID,
    STARTED_AT,
    session_run_id,
)
from llmledger.imports.summary import MAX_ERRORS, ImportSummary
from llmledger.store import metrics_rollup, pg_write, rollup
from llmledger.store.repository import driver_executemany, raw_insert_sql, raw_upsert_sql
from llmledger.store.schema import calls, import_state, runs
from llmledger.store.types import micros_to_datetime

__all__ = [
    "RollupSums",
    "Writer",
    "bulk_load",
    "count_calls",
    "delete_calls",
    "end_bulk_load",
    "no_calls_yet",
    "save_state",
]

_BATCH_ROWS = 5_000
#: A bulk load keeps the roll-up columns of up to this many rows (about 300 bytes each) to sum
#: at its end; past that it sums them as it goes.
_HELD_ROWS = 250_000
_IN_CHUNK = 500

#: (column, value) of the last columns of ``ROW_COLUMNS``, which a file's rows leave out
#: (see ``FileResult.shared``).
_Shared = tuple[tuple[str, Any], ...]


class Writer:
    """Writes rows in large executemany batches inside the import's transaction, creating
    the session runs they belong to first.

    The workers file each row under its session's run (:func:`session_run_id`); a session
    whose run an older version created under another id has its rows moved to that run here.
    In a bulk load (``bulk``: an empty SQLite ``calls`` table without its indexes) rows are
    plain inserts; rows that replace a copy written before wait in ``late`` until the
    unique index is back (:meth:`write_late`). Rows are queued by the columns their file
    leaves out (``FileResult.shared``): the statement that writes them has those values in
    its SQL."""

    def __init__(self, conn: Connection, summary: ImportSummary, *, bulk: bool = False) -> None:
        self.conn = conn
        self.summary = summary
        self.pending: dict[_Shared, list[tuple[Any, ...]]] = {}
        self.queued = 0
        self.late: dict[_Shared, list[tuple[Any, ...]]] = {}
        self._statements: dict[tuple[bool, _Shared], str] = {}
        self.sessions: set[str] = set()
        self.session_meta: dict[str, dict[str, Any]] = {}
        #: Derived run id -> the id of the session's run created before under another id.
        self.moved: dict[str, str] = {}
        self.changes = 0
        #: Rows the database refused (see :meth:`_write`).
        self.refused = 0
        self.bulk = bulk

    def extend(
        self,
        rows: list[tuple[Any, ...]],
        meta: dict[str, Any],
        own: str | None,
        replacing: list[tuple[Any, ...]] | None = None,
        shared: _Shared = (),
    ) -> None:
        """Queue the rows of one file, and those of its ``replacing`` rows that are better
        copies of calls queued before; ``meta`` describes the file's own session ``own`` (a
        row of another session keeps its own project); every row holds the ``shared``
        values."""
        self.pending.setdefault(shared, []).extend(rows)
        self.queued += len(rows)
        if replacing:
            (self.late if self.bulk else self.pending).setdefault(shared, []).extend(replacing)
            self.queued += len(replacing)
            rows = rows + replacing
        # The first row of each session (dict() keeps the last of reversed rows).
        firsts = dict(zip(map(itemgetter(SESSION_ID), reversed(rows)), reversed(rows), strict=True))
        for sid, row in firsts.items():
            if sid is not None and sid not in self.sessions and sid not in self.session_meta:
                extra = {} if sid == own else {"project": row[PROJECT]}
                self.session_meta[sid] = {**meta, **extra, "started_at": row[STARTED_AT]}
        if self.queued >= _BATCH_ROWS:
            self.flush()

    def _ensure_sessions(self) -> None:
        wanted = [s for s in self.session_meta if s not in self.sessions]
        if not wanted:
            return
        existing: dict[str, str] = {}
        asked = [s for s in wanted if "\x00" not in s]  # PostgreSQL takes no NUL
        for i in range(0, len(asked), _IN_CHUNK):
            chunk = asked[i : i + _IN_CHUNK]
            query = select(runs.c.key, runs.c.id).where(
                runs.c.kind == "session", runs.c.key.in_(chunk)
            )
            existing.update({k: v for k, v in self.conn.execute(query).all()})
        new = []
        for sid in wanted:
            self.sessions.add(sid)
            run_id = session_run_id(sid)
            if sid in existing:
                if existing[sid] != run_id:
                    self.moved[run_id] = existing[sid]
                continue
            meta = self.session_meta[sid]
            started = meta.pop("started_at")
            new.append(
                {
                    "id": run_id,
                    "parent_id": None,
                    "root_id": run_id,
                    "kind": "session",
                    "name": meta.get("project"),
                    "key": sid,
                    "status": "running",
                    "agent_id": meta.get("agent"),
                    "invocation_kind": "import",
                    "started_at": micros_to_datetime(started) or datetime.now(UTC),
                    "metadata": {k: v for k, v in meta.items() if v is not None},
                }
            )
        if new:
            self.summary.sessions_added += self._insert_runs(new)
        self.session_meta.clear()

    def _insert_runs(self, new: list[dict[str, Any]]) -> int:
        """Create session runs unless they exist (a concurrent import may have just created
        them: the ids are derived from the session ids, so theirs are ours); returns how many
        this import created."""
        insert = (pg_insert if self.conn.dialect.name == "postgresql" else sqlite_insert)(runs)
        # PostgreSQL stores no NUL character (a log's cwd may hold one): a run keeps the rest.
        rows = [_without_nul(run) for run in new]
        created = self.conn.execute(insert.on_conflict_do_nothing().returning(runs.c.id), rows)
        return len(created.all())

    def flush(self) -> None:
        """Write the queued rows."""
        # A bulk load's table has no unique index to upsert on: each key comes once.
        for shared, rows in self.pending.items():
            self._write(not self.bulk, shared, rows)
        self.pending.clear()
        self.queued = 0

    def write_late(self) -> None:
        """Write the rows that replace copies written before (a bulk load's, once the calls
        indexes are back): the upsert keeps the larger copy."""
        for shared, rows in self.late.items():
            self._write(True, shared, rows)
        self.late.clear()

    def _statement(self, upsert: bool, shared: _Shared) -> str:
        sql = self._statements.get((upsert, shared))
        if sql is None:
            # The rows hold the columns before the shared ones.
            columns = ROW_COLUMNS[: len(ROW_COLUMNS) - len(shared)]
            assert tuple(name for name, _ in shared) == ROW_COLUMNS[len(columns) :]
            write_sql = raw_upsert_sql if upsert else raw_insert_sql
            sql = self._statements[upsert, shared] = write_sql(
                self.conn.dialect.name, columns, shared
            )
        return sql

    def _writer(self, upsert: bool, shared: _Shared) -> Callable[[list[tuple[Any, ...]]], int]:
        """What writes rows that leave out the ``shared`` columns: on PostgreSQL one statement
        per batch (:func:`pg_write.upsert_calls`), elsewhere one per row."""
        if upsert and self.conn.dialect.name == "postgresql":
            columns = ROW_COLUMNS[: len(ROW_COLUMNS) - len(shared)]
            return lambda rows: pg_write.upsert_calls(self.conn, columns, rows, shared)
        sql = self._statement(upsert, shared)
        return lambda rows: driver_executemany(self.conn, sql, rows)

    def _write(self, upsert: bool, shared: _Shared, rows: list[tuple[Any, ...]]) -> None:
        self._ensure_sessions()
        if self.moved:
            moved = self.moved
            rows = [
                (*r[:RUN_ID], moved[r[RUN_ID]], *r[RUN_ID + 1 :]) if r[RUN_ID] in moved else r
                for r in rows
            ]
        # A value the database refuses (a text longer than its column, a NUL character, a sum
        # past 64 bits) fails its whole batch: the batch is written again row by row, and
        # only the rows that fail are left out, each named.
        refused = (OverflowError, self.conn.dialect.loaded_dbapi.DataError)
        write = self._writer(upsert, shared)
        try:
            with self.conn.begin_nested():
                self.changes += write(rows)
            return
        except refused:
            pass
        for row in rows:
            try:
                with self.conn.begin_nested():
                    self.changes += write([row])
            except refused as exc:
                self.refused += 1
                if len(self.summary.errors) < MAX_ERRORS:
                    reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                    self.summary.errors.append(
                        f"call {row[DEDUPE_KEY]} (session {row[SESSION_ID]}): not stored ({reason})"
                    )


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters dropped from its strings, at any depth."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def bulk_load(conn: Connection) -> list[Index]:
    """Prepare an empty SQLite ``calls`` table for a bulk load: drop its indexes (the unique
    key's too: the importer writes each key once, and better copies after the indexes are
    back) and the roll-up triggers. The indexes are built again before commit (sorting once
    beats updating them row by row); :func:`end_bulk_load` writes the roll-up from the sums
    of the rows read (or rebuilds it). The write lock SQLite holds for the import keeps every
    other writer out meanwhile."""
    if conn.dialect.name != "sqlite":
        return []
    dropped = list(calls.indexes)
    for index in dropped:
        index.drop(conn)
    rollup.drop_triggers(conn)
    metrics_rollup.drop_triggers(conn)
    conn.exec_driver_sql("DELETE FROM call_rollup")  # rows emptied by deletes, if any
    return dropped


_MAX_INTEGER = 2**63 - 1


def end_bulk_load(conn: Connection, summed: dict[rollup.Key, list[int]] | None) -> None:
    if summed is None:
        rollup.rebuild(conn)
    else:
        # A sum past 64 bits (only costs get there: a few calls at the token bound of the
        # dearest model in one bucket) is stored as SQLite's triggers store it: as a REAL.
        rows = [
            (*key, *(v if v <= _MAX_INTEGER else float(v) for v in sums))
            for key, sums in summed.items()
        ]
        driver_executemany(conn, rollup.insert_sql(conn.dialect.name), rows)
    rollup.create_triggers(conn)
    # The metrics' totals (GET /metrics): one GROUP BY over the calls just loaded.
    metrics_rollup.rebuild(conn)
    metrics_rollup.create_triggers(conn)


def no_calls_yet(conn: Connection) -> bool:
    """Whether a SQLite ledger holds no calls, asked outside any transaction."""
    raw = conn.connection.driver_connection
    if conn.dialect.name != "sqlite" or raw is None:
        return False
    return bool(raw.execute("SELECT NOT EXISTS (SELECT 1 FROM calls)").fetchone()[0])


def count_calls(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT COUNT(*) FROM calls").scalar_one())


def save_state(
    conn: Connection,
    plans: Sequence[FilePlan],
    results: Mapping[str, FileResult],
    recorded: datetime,
) -> None:
    done = [p for p in plans if p.file.path in results and results[p.file.path].failed is None]
    if not done:
        return
    # An upsert: a concurrent import of the same files may have saved their state since.
    insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(import_state)
    columns = [c.name for c in import_state.columns if c.name != "path"]
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[import_state.c.path],
            set_={name: insert.excluded[name] for name in columns},
        ),
        [
            {
                "path": p.file.path,
                "source": SOURCE_OF[p.file.agent],
                "device": p.stat.st_dev,
                "inode": p.stat.st_ino,
                "size": p.stat.st_size,
                "mtime_ns": p.stat.st_mtime_ns,
                "offset": results[p.file.path].offset,
                "head_sha256": results[p.file.path].head_sha256,
                "lines": p.line_base + results[p.file.path].lines,
                # The calls the read found, copies inside the file settled (the rows are
                # gone by now: written and freed).
                "calls": results[p.file.path].calls_seen - results[p.file.path].duplicates,
                "updated_at": recorded,
            }
            for p in done
        ],
    )


def delete_calls(conn: Connection, keys: set[str]) -> int:
    """Delete the calls stored under ``keys``; returns how many were deleted."""
    deleted = 0
    ordered = sorted(keys)
    for i in range(0, len(ordered), _IN_CHUNK):
        deleted += conn.execute(
            calls.delete().where(calls.c.dedupe_key.in_(ordered[i : i + _IN_CHUNK]))
        ).rowcount
    return deleted


class RollupSums:
    """The roll-up of the rows a bulk load writes (see :func:`rollup.partial`), summed on a
    thread while SQLite builds the indexes: the import's end runs on one core (SQLite
    releases the GIL), and the other does this. Until then only the columns the roll-up
    reads are kept of each row; past :data:`_HELD_ROWS` of them they are summed at once."""

    def __init__(self) -> None:
        #: Per ``FileResult.shared``: what takes the columns from a row, where each column is
        #: in what it takes, and those columns of the rows.
        self._held: dict[
            _Shared, tuple[Callable[[Any], Any], dict[str, int], list[tuple[Any, ...]]]
        ] = {}
        self._count = 0
        self._sums: dict[rollup.Key, list[int]] | None = {}
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def add(self, rows: list[tuple[Any, ...]], shared: _Shared) -> None:
        """Count ``rows``, which leave out the ``shared`` columns."""
        if self._sums is None:
            return  # the mirror declined: the roll-up is rebuilt from the calls
        held = self._held.get(shared)
        if held is None:
            fixed = {name for name, _ in shared}
            columns = [name for name in rollup.READ_COLUMNS if name not in fixed]
            project = itemgetter(*(ROW_AT[c] for c in columns))
            held = self._held[shared] = (project, {c: i for i, c in enumerate(columns)}, [])
        held[2].extend(map(held[0], rows))
        self._count += len(rows)
        if self._count > _HELD_ROWS:
            self._sum()

    def start(self) -> None:
        """Sum what is held on a thread."""
        self._thread = threading.Thread(target=self._run, name="llmledger-rollup")
        self._thread.start()

    def result(self) -> dict[rollup.Key, list[int]] | None:
        """The sums, or None when the mirror declined."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._sums

    def _run(self) -> None:
        try:
            self._sum()
        except BaseException as exc:  # raised again by result(), in the importing thread
            self._error = exc

    def _sum(self) -> None:
        for shared, (_, at, rows) in self._held.items():
            if self._sums is None:
                break
            part = rollup.partial(rows, at, dict(shared))
            if part is None:
                self._sums = None
            else:
                rollup.merge(self._sums, part)
        self._held.clear()
        self._count = 0
