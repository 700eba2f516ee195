"""Incremental import of the logs coding agents write (Claude Code, Codex, Gemini CLI).

>>> summary = import_logs(repo)                 # every agent, from where they write
>>> summary.calls_added, summary.duplicates, summary.skipped

The first import reads every file; the ledger's ``import_state`` table then remembers, per
path, the device, inode, size, mtime, the offset read up to (the last complete newline) and a
hash of the first bytes. The next import stats each file (``_import_plan.py`` decides):
unchanged files are not opened;
grown files are read from the saved offset; a truncated (size < offset) or replaced (other
inode, other first bytes) file is read again from the start, which changes nothing already
stored because every call has a dedupe key.

Copies of a call are settled as ccusage v20 does (DESIGN §4 rule 5; ccusage.md §2): the same
dedupe key (message id + request id, or the message id alone) keeps the copy with the larger
token total; a sidechain copy of a message id seen with another request id yields to the
parent copy. Within the files being read this happens in memory; against calls imported
before, the ``calls.message_id`` index finds the stored copies. Everything is written in one
transaction, so an interrupted import leaves the ledger as it was.
"""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Index, and_, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from llmledger._import_plan import Plan, plan_import
from llmledger._import_read import (
    DEDUPE_KEY,
    MESSAGE_ID,
    PROJECT,
    ROW_AT,
    ROW_COLUMNS,
    RUN_ID,
    SESSION_ID,
    STARTED_AT,
    FileResult,
    session_run_id,
)
from llmledger._import_reading import Reading, start_reading
from llmledger._logfiles import AGENT_SOURCES, AGENTS, SOURCE_OF, LogFile, discover
from llmledger.store import rollup
from llmledger.store.engine import rollback_journal
from llmledger.store.repository import (
    Repository,
    driver_executemany,
    raw_insert_sql,
    raw_upsert_sql,
)
from llmledger.store.schema import calls, import_state, runs
from llmledger.store.types import datetime_to_micros, micros_to_datetime

__all__ = [
    "AGENTS",
    "AGENT_SOURCES",
    "SOURCE_OF",
    "ImportSummary",
    "LogFile",
    "discover",
    "drop_imported_copies",
    "import_logs",
    "plan_import",
]

_BATCH_ROWS = 5_000
#: A bulk load keeps the roll-up columns of up to this many rows (about 300 bytes each) to sum
#: at its end; past that it sums them as it goes.
_HELD_ROWS = 250_000
_IN_CHUNK = 500
_MAX_ERRORS = 10

Progress = Callable[[int, int], None]
#: (column, value) of the last columns of ``ROW_COLUMNS``, which a file's rows leave out
#: (see ``FileResult.shared``).
_Shared = tuple[tuple[str, Any], ...]


@dataclass(slots=True)
class ImportSummary:
    """What an import did: files seen and read, lines read, calls added, copies skipped, and
    lines skipped by reason with the first few as ``file:line: message``."""

    files: int = 0
    files_read: int = 0
    files_skipped_unchanged: int = 0
    files_reread: int = 0
    bytes_read: int = 0
    lines: int = 0
    calls_seen: int = 0
    calls_added: int = 0
    calls_updated: int = 0
    duplicates: int = 0
    sessions_added: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def lines_skipped(self) -> int:
        """How many lines were skipped, over every reason."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values."""
        return {
            "files": self.files,
            "files_read": self.files_read,
            "files_skipped_unchanged": self.files_skipped_unchanged,
            "files_reread": self.files_reread,
            "bytes_read": self.bytes_read,
            "lines": self.lines,
            "calls_seen": self.calls_seen,
            "calls_added": self.calls_added,
            "calls_updated": self.calls_updated,
            "duplicates": self.duplicates,
            "sessions_added": self.sessions_added,
            "lines_skipped": self.lines_skipped,
            "skipped": dict(self.skipped),
            "errors": list(self.errors),
        }


# -- worker processes ----------------------------------------------------------------------------

#: Engines whose pooled connections processes forked from this one must leave alone.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
#: In a forked child: the parent's pools, held so that their connections are never closed
#: here (closing one would end the parent's PostgreSQL session, or drop SQLite's locks).
_INHERITED: list[Any] = []


def forget_in_children(engine: Engine) -> None:
    """Make processes forked from now on (the import's workers) drop ``engine``'s pooled
    connections, which are the parent's: a child never uses them."""
    _ENGINES.add(engine)


def _forget_connections() -> None:
    for engine in list(_ENGINES):
        _INHERITED.append(engine.pool)
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_connections)


# -- writing -----------------------------------------------------------------------------------


class _Writer:
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
            self._write(self._statement(not self.bulk, shared), rows)
        self.pending.clear()
        self.queued = 0

    def write_late(self) -> None:
        """Write the rows that replace copies written before (a bulk load's, once the calls
        indexes are back): the upsert keeps the larger copy."""
        for shared, rows in self.late.items():
            self._write(self._statement(True, shared), rows)
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

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
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
        try:
            with self.conn.begin_nested():
                self.changes += driver_executemany(self.conn, sql, rows)
            return
        except refused:
            pass
        for row in rows:
            try:
                with self.conn.begin_nested():
                    self.changes += driver_executemany(self.conn, sql, [row])
            except refused as exc:
                self.refused += 1
                if len(self.summary.errors) < _MAX_ERRORS:
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


# -- dedupe across files and against the store -------------------------------------------------


#: Sources that ``llmledger run`` records from an agent CLI's own output: the same API calls
#: the agent also writes to the logs that imports read.
_LIVE = tuple(source for sources in AGENT_SOURCES.values() for source in sources[1:])


def drop_imported_copies(
    repo: Repository,
    live_source: str,
    *,
    message_ids: Iterable[str],
    session_id: str | None,
    since: datetime,
    until: datetime,
) -> int:
    """Delete imported log calls that a live record of the same calls (``llmledger run``
    parsing the agent's own output as ``live_source``) supersedes — the mirror of the
    import's rule, for logs imported while the run went on: calls with one of
    ``message_ids``, or calls of ``session_id`` between ``since`` and ``until``. Returns how
    many were deleted (0 for a source no agent log also holds)."""
    logs = [s[0] for s in AGENT_SOURCES.values() if live_source in s[1:]]
    if not logs:
        return 0
    ids = sorted(set(message_ids))
    matches: list[ColumnElement[bool]] = []
    for i in range(0, len(ids), _IN_CHUNK):
        matches.append(calls.c.message_id.in_(ids[i : i + _IN_CHUNK]))
    if session_id is not None:
        matches.append(
            and_(
                calls.c.session_id == session_id,
                calls.c.started_at >= since,
                calls.c.started_at <= until,
            )
        )
    if not matches:
        return 0
    with repo.engine.begin() as conn:
        deleted = conn.execute(
            calls.delete().where(calls.c.source == logs[0], or_(*matches))
        ).rowcount
    return max(int(deleted), 0)


class _Dedupe:
    """Global copy settlement (ccusage v20 rules) over the rows of every file read, and against
    what the store already holds — including the same calls recorded live by ``llmledger run``,
    so that running Claude Code through llmledger and importing its transcripts never counts a
    call twice."""

    def __init__(self, conn: Connection, sources: Sequence[str]) -> None:
        self.conn = conn
        watched = [*sources, *_LIVE]
        self.check_store = (
            conn.execute(select(calls.c.id).where(calls.c.source.in_(watched)).limit(1)).first()
            is not None
        )
        # Sessions recorded live (by ``llmledger run``), with the time window of each run that
        # recorded them: log lines of that session inside a window are copies (lines outside
        # it, e.g. earlier turns of a session the run resumed, are not).
        self.live_sessions: dict[str, list[tuple[int, int | None]]] = {}
        if self.check_store:
            query = (
                select(calls.c.session_id, runs.c.started_at, runs.c.finished_at)
                .join(runs, runs.c.id == calls.c.run_id)
                .where(calls.c.source.in_(_LIVE), calls.c.session_id.is_not(None))
                .distinct()
            )
            for sid, start, end in conn.execute(query).all():
                window = (datetime_to_micros(start), end and datetime_to_micros(end))
                self.live_sessions.setdefault(sid, []).append(window)
        self.best: dict[str, tuple[int, int, bool, bool]] = {}
        # message id -> [(dedupe key, is sidechain, recorded live)] for keys seen or stored;
        # a bare key stands for [(key, False, False)] (see filter()).
        self.by_message: dict[str, str | list[tuple[str, bool, bool]]] = {}
        self.delete: set[str] = set()

    def load_stored(self, message_ids: Iterable[str]) -> None:
        """Remember stored copies of these message ids (only when the store may have some)."""
        if not self.check_store:
            return
        # An id with a NUL cannot be stored (nor asked for) on PostgreSQL: none is stored.
        wanted = [
            m for m in dict.fromkeys(message_ids) if m not in self.by_message and "\x00" not in m
        ]
        stored: dict[str, list[tuple[str, bool, bool]]] = {}
        for i in range(0, len(wanted), _IN_CHUNK):
            query = select(
                calls.c.message_id, calls.c.dedupe_key, calls.c.metadata, calls.c.source
            ).where(calls.c.message_id.in_(wanted[i : i + _IN_CHUNK]))
            for mid, key, meta, source in self.conn.execute(query).all():
                side = bool(meta and meta.get("is_sidechain") is True)
                stored.setdefault(mid, []).append((key, side, source in _LIVE))
                # A stored copy of the same key is settled by the upsert itself.
        self.by_message.update(stored)

    def filter(
        self, rows: list[tuple[Any, ...]], infos: list[tuple[int, int, bool, bool]]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The rows to write, in order (see :meth:`keep`): those of calls met for the first
        time, and those that are better copies of calls kept before."""
        best, by_message = self.best, self.by_message
        kept: list[tuple[Any, ...]] = []
        replacing: list[tuple[Any, ...]] = []
        live = bool(self.live_sessions)
        if _BULK_FILTER and not live and rows:
            # The common case, at C speed: every row a call met for the first time (new keys
            # and message ids, none twice, no sidechain copy). Each message id then maps to
            # its bare key.
            keys = list(map(_KEY_OF, rows))
            mids = list(map(_MESSAGE_OF, rows))
            if (
                all(mids)
                and best.keys().isdisjoint(keys)
                and by_message.keys().isdisjoint(mids)
                and len(set(keys)) == len(keys)
                and len(set(mids)) == len(mids)
                and not any(map(_SIDECHAIN_OF, infos))
            ):
                best.update(zip(keys, infos, strict=True))
                by_message.update(zip(mids, keys, strict=True))
                return rows, replacing
        for row, info in zip(rows, infos, strict=True):
            key, mid = row[DEDUPE_KEY], row[MESSAGE_ID]
            if key in best:
                if self.keep(key, mid, row[SESSION_ID], row[STARTED_AT], info):
                    replacing.append(row)
            elif not live and mid and mid not in by_message:
                # The common case, inline: a call met for the first time.
                by_message[mid] = [(key, info[3], False)]
                best[key] = info
                kept.append(row)
            elif self.keep(key, mid, row[SESSION_ID], row[STARTED_AT], info):
                kept.append(row)
        return kept, replacing

    def keep(
        self,
        key: str,
        mid: str | None,
        session: str | None,
        at: int | None,
        info: tuple[int, int, bool, bool],
    ) -> bool:
        """Whether a row is written (True) or is a copy that changes nothing (False)."""
        if self.live_sessions and session is not None:
            windows = self.live_sessions.get(session, ())
            if at is not None and any(s <= at and (e is None or at <= e) for s, e in windows):
                return False
        old = self.best.get(key)
        if old is not None:
            if _better(info, old):
                self.best[key] = info
                return True
            return False
        side = info[3]
        if mid:
            seen = self.by_message.get(mid)
            if seen is None:  # the common case: a message id met for the first time
                self.by_message[mid] = [(key, side, False)]
                self.best[key] = info
                return True
            if isinstance(seen, str):
                seen = [(seen, False, False)]
            others = [entry for entry in seen if entry[0] != key]
            if others:
                if side or any(live for _, _, live in others):
                    return False  # a sidechain replay, or a call `llmledger run` recorded
                replaced = [k for k, s, _ in others if s]
                if replaced:  # the parent copy wins over sidechain replays seen first
                    self.delete.update(replaced)
                    seen = [e for e in others if not e[1]]
            self.by_message[mid] = [*seen, (key, side, False)]
        self.best[key] = info
        return True


#: Whether filter() settles a file of calls all met for the first time at once (the tests
#: turn it off to compare).
_BULK_FILTER = True
_KEY_OF = itemgetter(DEDUPE_KEY)
_MESSAGE_OF = itemgetter(MESSAGE_ID)
_SIDECHAIN_OF = itemgetter(3)


def _better(new: tuple[int, int, bool, bool], old: tuple[int, int, bool, bool]) -> bool:
    if new[0] != old[0]:
        return new[0] > old[0]
    if new[1] != old[1]:
        return new[1] > old[1]
    return new[2] and not old[2]


# -- the import --------------------------------------------------------------------------------


def _bulk_load(conn: Connection) -> list[Index]:
    """Prepare an empty SQLite ``calls`` table for a bulk load: drop its indexes (the unique
    key's too: the importer writes each key once, and better copies after the indexes are
    back) and the roll-up triggers. The indexes are built again before commit (sorting once
    beats updating them row by row); :func:`_end_bulk_load` writes the roll-up from the sums
    of the rows read (or rebuilds it). The write lock SQLite holds for the import keeps every
    other writer out meanwhile."""
    if conn.dialect.name != "sqlite":
        return []
    dropped = list(calls.indexes)
    for index in dropped:
        index.drop(conn)
    rollup.drop_triggers(conn)
    conn.exec_driver_sql("DELETE FROM call_rollup")  # rows emptied by deletes, if any
    return dropped


_MAX_INTEGER = 2**63 - 1


def _end_bulk_load(conn: Connection, summed: dict[rollup.Key, list[int]] | None) -> None:
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


def _no_calls_yet(conn: Connection) -> bool:
    """Whether a SQLite ledger holds no calls, asked outside any transaction."""
    raw = conn.connection.driver_connection
    if conn.dialect.name != "sqlite" or raw is None:
        return False
    return bool(raw.execute("SELECT NOT EXISTS (SELECT 1 FROM calls)").fetchone()[0])


def _count_calls(conn: Connection) -> int:
    return int(conn.exec_driver_sql("SELECT COUNT(*) FROM calls").scalar_one())


def _save_state(conn: Connection, plans: Sequence[Plan], results: Mapping[str, FileResult],
                recorded: datetime) -> None:  # fmt: skip
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


def import_logs(
    repo: Repository,
    agents: Iterable[str] = AGENTS,
    paths: Sequence[str | Path] | None = None,
    *,
    pricer: Any | None = None,
    overrides_path: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    files: Sequence[LogFile] | None = None,
    reading: Reading | None = None,
) -> ImportSummary:
    """Import what is new in the agents' logs into the ledger and say what was done.

    ``agents`` are names from :data:`AGENTS`; ``paths`` restricts the import to those files or
    directories (default: where each agent writes). ``pricer`` prices calls read in this
    process (worker processes build their own from ``overrides_path``). ``progress`` is called
    with (bytes read, bytes to read) as files complete. Bad lines never abort the import: they
    are counted in ``skipped`` and the first few reported in ``errors``.

    ``reading`` is the reads of an import already planned and started (see
    :func:`~llmledger._import_reading.start_reading`); the other arguments then do nothing.
    """
    forget_in_children(repo.engine)
    if reading is None:
        found = list(files) if files is not None else discover(agents, paths)
        plans, unchanged = plan_import(repo, found)
        if not plans:
            return ImportSummary(files=len(found), files_skipped_unchanged=unchanged)
        reading = start_reading(plans, files=len(found), unchanged=unchanged, pricer=pricer,
                                overrides_path=overrides_path, workers=workers)  # fmt: skip
    with reading:
        return _import(repo, reading, progress)


def _import(repo: Repository, reading: Reading, progress: Progress | None) -> ImportSummary:
    with _cycle_collector_paused():
        # The collector resumes once the import's rows and rankings are freed, which the
        # first collection would otherwise walk.
        return _import_rows(repo, reading, progress)


def _import_rows(repo: Repository, reading: Reading, progress: Progress | None) -> ImportSummary:
    summary = ImportSummary(files=reading.files, files_skipped_unchanged=reading.unchanged)
    plans, tasks, recorded = reading.plans, reading.tasks, reading.recorded
    total_bytes = sum(t.size - t.offset for t in tasks)
    by_path = {p.file.path: p for p in plans}
    results: dict[str, FileResult] = {}
    skipped: Counter[str] = Counter()
    with (
        repo.engine.connect() as conn,
        rollback_journal(conn, _no_calls_yet(conn)),
        conn.begin(),
    ):
        sources = sorted({SOURCE_OF[p.file.agent] for p in plans})
        if conn.dialect.name == "sqlite":
            # The calls indexes are updated in random key order: a larger page cache keeps
            # their pages in memory for the length of the import.
            conn.exec_driver_sql("PRAGMA cache_size = -131072")
        before = _count_calls(conn)
        bulk = before == 0 and conn.dialect.name == "sqlite"
        dropped = _bulk_load(conn) if bulk else []
        dedupe = _Dedupe(conn, sources)
        writer = _Writer(conn, summary, bulk=bulk)
        # A bulk load writes the roll-up from the rows' own sums (or rebuilds it at the end).
        sums: _RollupSums | None = _RollupSums() if bulk else None
        done_bytes = 0
        codex_sessions: set[str] = set()
        for task, result in zip(tasks, reading.results(), strict=True):
            plan = by_path[task.path]
            results[task.path] = result
            done_bytes += task.size - task.offset
            _account(summary, skipped, plan, result)
            dedupe.load_stored(r[MESSAGE_ID] for r in result.rows if r[MESSAGE_ID])
            meta = {
                "project": plan.file.project,
                "cwd": result.cwd,
                "source": SOURCE_OF[plan.file.agent],
                "agent": _AGENT_IDS[plan.file.agent],
            }
            if plan.file.agent == "codex" and dedupe.check_store:
                codex_sessions.update(r[SESSION_ID] for r in result.rows if r[SESSION_ID])
            kept, replacing = dedupe.filter(result.rows, result.info)
            summary.duplicates += len(result.rows) - len(kept) - len(replacing)
            if replacing:
                sums = None  # a copy replaces a call summed before: rebuild the roll-up
            if sums is not None:
                sums.add(kept, result.shared)
            writer.extend(kept, meta, plan.file.session_id, replacing, result.shared)
            result.rows = []
            result.info = []
            if progress is not None:
                progress(done_bytes, total_bytes)
        writer.flush()
        if writer.refused:
            sums = None  # it summed the refused rows too: rebuild the roll-up
        if sums is not None:
            sums.start()
        for index in dropped:
            index.create(conn)
        writer.write_late()
        dedupe.delete.update(_legacy_codex_keys(conn, codex_sessions))
        deleted = 0
        if dedupe.delete:
            keys = sorted(dedupe.delete)
            for i in range(0, len(keys), _IN_CHUNK):
                deleted += conn.execute(
                    calls.delete().where(calls.c.dedupe_key.in_(keys[i : i + _IN_CHUNK]))
                ).rowcount
        summed = None if sums is None else sums.result()
        if bulk:
            _end_bulk_load(conn, summed if not deleted else None)
        after = _count_calls(conn)
        _save_state(conn, plans, results, micros_to_datetime(recorded) or datetime.now(UTC))
    if writer.refused:
        skipped["not stored"] += writer.refused
        summary.calls_seen -= writer.refused
    summary.calls_added = max(0, after - before)
    summary.calls_updated = max(0, writer.changes - (after - before) - deleted)
    summary.duplicates = max(0, summary.calls_seen - summary.calls_added - summary.calls_updated)
    summary.skipped = dict(skipped)
    return summary


_AGENT_IDS = {"claude": "claude-code", "codex": "codex", "gemini": "gemini-cli"}


def _legacy_codex_keys(conn: Connection, sessions: set[str]) -> list[str]:
    """The keys under which earlier versions stored the calls of these Codex sessions
    (``session:turnN``, numbered within each file). A rollout read again now keys its calls by
    their own time and counts (so that a copied branch's replayed turns are the same calls),
    and writes them all: the old rows of its sessions go."""
    found: list[str] = []
    wanted = sorted(s for s in sessions if "\x00" not in s)  # none such is stored
    for i in range(0, len(wanted), _IN_CHUNK):
        query = select(calls.c.dedupe_key, calls.c.session_id).where(
            calls.c.source == SOURCE_OF["codex"], calls.c.session_id.in_(wanted[i : i + _IN_CHUNK])
        )
        for key, sid in conn.execute(query).all():
            if key.startswith(f"{sid}:turn") and key[len(sid) + 5 :].isdigit():
                found.append(key)
    return found


class _RollupSums:
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


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    # An import holds hundreds of thousands of rows and copy rankings (tuples, lists) for its
    # whole length; the cycle collector would walk them again at every full collection (a
    # fifth of the main process's time on the benchmark tree) and find nothing to free:
    # reference counting frees them.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _account(summary: ImportSummary, skipped: Counter[str], plan: Plan, result: FileResult) -> None:
    summary.files_read += 1
    summary.files_reread += int(plan.reread)
    summary.bytes_read += plan.stat.st_size - plan.offset
    summary.lines += result.lines
    summary.calls_seen += result.calls_seen
    skipped.update(result.skipped)
    if result.failed is not None:
        skipped[result.failed_reason] += 1
        if len(summary.errors) < _MAX_ERRORS:
            summary.errors.append(result.failed)
    for error in result.errors:
        if len(summary.errors) < _MAX_ERRORS:
            summary.errors.append(error)
