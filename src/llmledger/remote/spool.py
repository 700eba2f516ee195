"""The spool: a local SQLite file of the writes a remote ledger has not delivered yet.

Every write of a remote :class:`~llmledger.Ledger` (open a run, a call, finish a run, a task
status event) is one row of ``ops``, appended in order and committed before ``record()``
returns: WAL with ``synchronous=NORMAL`` writes to the operating system, not the disk, so a row
survives the process being killed (not a power cut). The sender deletes the rows the server
acknowledged and moves the ones it refused to ``dead``. Several processes may append to one
spool; one of them at a time sends (:class:`SendLock`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["DeadLetter", "Op", "OpKind", "SendLock", "Spool", "SpoolError", "SpoolStatus"]

OpKind = Literal["run", "call", "finish", "status"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # A new seq is above every pending one (the rowid rule), which is all the order needs;
    # AUTOINCREMENT would cost each append a few microseconds more.
    "CREATE TABLE IF NOT EXISTS ops ("
    " seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, ref TEXT, body BLOB NOT NULL,"
    " created_at REAL NOT NULL, tries INTEGER NOT NULL DEFAULT 0, last_error TEXT)",
    "CREATE INDEX IF NOT EXISTS ops_by_ref ON ops (kind, ref, seq)",
    "CREATE TABLE IF NOT EXISTS dead ("
    " id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, kind TEXT NOT NULL, ref TEXT,"
    " body BLOB NOT NULL,"
    " created_at REAL NOT NULL, failed_at REAL NOT NULL, http_status INTEGER, error TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS dead_by_ref ON dead (kind, ref)",
)


class SpoolError(Exception):
    """The spool cannot be used (it belongs to another service)."""


@dataclass(frozen=True, slots=True)
class Op:
    """One pending write: its place in the queue, what it is, the run id (calls, finish) or
    task key (status) it concerns, and its JSON body."""

    seq: int
    kind: OpKind
    ref: str | None
    body: bytes
    created_at: float
    tries: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A write the server refused for good (a 4xx), kept for inspection."""

    seq: int
    kind: OpKind
    ref: str | None
    body: bytes
    created_at: float
    failed_at: float
    http_status: int | None
    error: str


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    """What a spool holds: pending writes by kind, the oldest one's age, the dead letters, and
    the last error a send met."""

    path: str
    url: str | None
    pending: int
    pending_by_kind: dict[str, int]
    oldest_created_at: float | None
    dead: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object ``llmledger spool status --json`` prints."""
        oldest = self.oldest_created_at
        return {
            "path": self.path,
            "url": self.url,
            "pending": self.pending,
            "pending_by_kind": self.pending_by_kind,
            "oldest_age_s": None if oldest is None else round(max(0.0, time.time() - oldest), 3),
            "dead": self.dead,
            "last_error": self.last_error,
        }


class Spool:
    """A spool file, opened (and created) on first use; safe to share between threads and
    between processes (SQLite's own locking, a busy timeout).

    Writes share one connection behind a lock: in one process, an append waits for the
    sender's delete of a batch on that lock (a fraction of a millisecond), not in SQLite's
    busy handler (which sleeps a millisecond at least). Reads have a connection of their own
    and, in WAL mode, never wait for a write.
    """

    def __init__(self, path: str | Path, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url.rstrip("/") if url else None
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pid = 0
        self._inherited: list[sqlite3.Connection] = []
        _SPOOLS.add(self)

    # -- connection ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        if self._conn is not None:
            # Forked: the parent's connections must not be used (nor closed) here.
            self._inherited.append(self._conn)
        if self._reader is not None:
            self._inherited.append(self._reader)
            self._reader = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Appends never checkpoint (that would put a disk sync on record()'s path); the
        # sender's deletes do, in its own thread (auto-checkpoint) and in checkpoint().
        conn.execute("PRAGMA wal_autocheckpoint=0")
        with _transaction(conn):
            for statement in _SCHEMA:
                conn.execute(statement)
            if self.url is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO meta (name, value) VALUES ('url', ?)", (self.url,)
                )
                owner = conn.execute("SELECT value FROM meta WHERE name = 'url'").fetchone()[0]
        if self.url is not None and owner != self.url:
            conn.close()
            # Its writes would go to the wrong service.
            raise SpoolError(f"{self.path} is the spool of {owner}, not of {self.url}")
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of a query, on the read connection."""
        with self._read_lock:
            with self._lock:
                self._connection()  # creates the file and the tables; notices a fork
                reader = self._reader
                if reader is None:
                    reader = sqlite3.connect(
                        self.path, timeout=30.0, isolation_level=None, check_same_thread=False
                    )
                    reader.execute("PRAGMA wal_autocheckpoint=0")
                    self._reader = reader
            return reader.execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close this process's connections (the file and its rows stay)."""
        with self._read_lock, self._lock:
            for conn in (self._conn, self._reader):
                if conn is not None and self._pid == os.getpid():
                    conn.close()
            self._conn = self._reader = None

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: OpKind, ref: str | None, bodies: Sequence[bytes]) -> int:
        """Append one op per body, in order, in one transaction; return the last seq."""
        now = time.time()
        with self._lock:
            conn = self._connection()
            if len(bodies) == 1:  # autocommit: one statement, one commit
                cursor = conn.execute(
                    "INSERT INTO ops (kind, ref, body, created_at) VALUES (?, ?, ?, ?)",
                    (kind, ref, bodies[0], now),
                )
            else:
                with _transaction(conn):
                    conn.executemany(
                        "INSERT INTO ops (kind, ref, body, created_at) VALUES (?, ?, ?, ?)",
                        [(kind, ref, body, now) for body in bodies],
                    )
                    cursor = conn.execute("SELECT last_insert_rowid()")
                return int(cursor.fetchone()[0])
            return int(cursor.lastrowid or 0)

    def ack(self, seqs: Sequence[int]) -> None:
        """Delete ops the server acknowledged (one statement: the shortest write lock)."""
        for start in range(0, len(seqs), 10_000):
            chunk = list(seqs[start : start + 10_000])
            marks = ",".join("?" * len(chunk))
            with self._lock:
                self._connection().execute(f"DELETE FROM ops WHERE seq IN ({marks})", chunk)

    def bury(self, ops: Sequence[Op], http_status: int | None, error: str) -> None:
        """Move ops the server refused for good to the dead letters."""
        now = time.time()
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                for op in ops:
                    conn.execute(
                        "INSERT INTO dead (seq, kind, ref, body, created_at, failed_at,"
                        " http_status, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (op.seq, op.kind, op.ref, op.body, op.created_at, now, http_status, error),
                    )
                    conn.execute("DELETE FROM ops WHERE seq = ?", (op.seq,))

    def run_refused(self, run_id: str) -> bool:
        """Whether the server refused to create run ``run_id`` (it is a dead letter)."""
        return bool(
            self._read("SELECT 1 FROM dead WHERE kind = 'run' AND ref = ? LIMIT 1", (run_id,))
        )

    def dependents(self, run_id: str) -> list[Op]:
        """The pending ops that need run ``run_id`` on the server: its calls and finish, the
        status events naming it, and its child runs with everything that needs them."""
        found: list[Op] = []
        todo = [run_id]
        while todo:
            ref = todo.pop()
            rows = self._read(
                "SELECT seq, kind, ref, body, created_at, tries FROM ops"
                " WHERE (kind IN ('call', 'finish') AND ref = ?)"
                " OR (kind = 'run' AND instr(body, ?) > 0)"
                " OR (kind = 'status' AND instr(body, ?) > 0) ORDER BY seq",
                (ref, f'"parent_id":"{ref}"'.encode(), f'"run_id":"{ref}"'.encode()),
            )
            for row in rows:
                op = _op(row)
                found.append(op)
                if op.kind == "run" and op.ref is not None:
                    todo.append(op.ref)
        return found

    def note_failure(self, ops: Sequence[Op], error: str) -> None:
        """Count a failed send of ``ops`` and keep the reason (``spool status`` shows it)."""
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                conn.executemany(
                    "UPDATE ops SET tries = tries + 1, last_error = ? WHERE seq = ?",
                    [(error[:500], op.seq) for op in ops],
                )

    def requeue_dead(self) -> int:
        """Put every dead letter back at the end of the queue; return how many."""
        with self._lock:
            conn = self._connection()
            with _transaction(conn):
                moved = conn.execute(
                    "INSERT INTO ops (kind, ref, body, created_at)"
                    " SELECT kind, ref, body, created_at FROM dead ORDER BY id"
                ).rowcount
                conn.execute("DELETE FROM dead")
        return int(moved)

    def checkpoint(self) -> None:
        """Fold the write-ahead log back into the file, on the read connection: appends go
        on meanwhile (a passive checkpoint does not block writers, and its disk sync is not
        done under the appends' lock)."""
        self._read("PRAGMA wal_checkpoint(PASSIVE)")

    # -- reading -------------------------------------------------------------------------

    def next_batch(self, limit: int) -> list[Op]:
        """The ops to send next: the oldest op; when it is a call, with the calls of the same
        run queued after it (up to ``limit`` in all, and none past that run's finish), so a
        run's calls travel together while every run is created before its calls and its
        calls arrive before its finish."""
        head = self._read(
            "SELECT seq, kind, ref, body, created_at, tries FROM ops ORDER BY seq LIMIT 1"
        )
        if not head:
            return []
        first = _op(head[0])
        if first.kind != "call" or limit <= 1:
            return [first]
        finish = self._read(
            "SELECT min(seq) FROM ops WHERE kind = 'finish' AND ref IS ? AND seq > ?",
            (first.ref, first.seq),
        )[0][0]
        rows = self._read(
            "SELECT seq, kind, ref, body, created_at, tries FROM ops"
            " WHERE kind = 'call' AND ref IS ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
            (first.ref, first.seq, finish if finish is not None else 2**62, limit),
        )
        return [_op(row) for row in rows]

    def last_seq(self) -> int:
        """The seq of the newest pending op (0 when none is)."""
        return int(self._read("SELECT max(seq) FROM ops")[0][0] or 0)

    def pending(self, upto: int | None = None) -> int:
        """How many ops wait to be sent (those with seq ≤ ``upto`` when given)."""
        return int(self._read("SELECT count(*) FROM ops WHERE seq <= ?", (upto or 2**62,))[0][0])

    def any_pending(self, upto: int | None = None) -> bool:
        """Whether an op with seq ≤ ``upto`` (any op) waits to be sent."""
        return bool(self._read("SELECT 1 FROM ops WHERE seq <= ? LIMIT 1", (upto or 2**62,)))

    def status(self) -> SpoolStatus:
        """Counts for ``llmledger spool status``."""
        by_kind = dict(self._read("SELECT kind, count(*) FROM ops GROUP BY kind"))
        oldest = self._read("SELECT min(created_at) FROM ops")[0][0]
        dead = self._read("SELECT count(*) FROM dead")[0][0]
        error = self._read(
            "SELECT last_error FROM ops WHERE last_error IS NOT NULL ORDER BY seq LIMIT 1"
        )
        url = self._read("SELECT value FROM meta WHERE name = 'url'")
        return SpoolStatus(
            path=str(self.path),
            url=url[0][0] if url else self.url,
            pending=sum(by_kind.values()),
            pending_by_kind={str(k): int(v) for k, v in sorted(by_kind.items())},
            oldest_created_at=oldest,
            dead=int(dead),
            last_error=error[0][0] if error else None,
        )

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest dead letters, newest first."""
        rows = self._read(
            "SELECT seq, kind, ref, body, created_at, failed_at, http_status, error"
            " FROM dead ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [DeadLetter(*row) for row in rows]


class SendLock:
    """Who sends a spool: an exclusive ``flock`` on ``<spool>.lock``, taken without waiting.

    The kernel drops it when its holder dies, however it dies, so a killed sender never
    blocks the next one. One sender at a time keeps a spool's ops in order on the server.
    """

    def __init__(self, spool_path: str | Path) -> None:
        self.path = Path(f"{spool_path}.lock")
        self._file: IO[bytes] | None = None
        self._pid = 0

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (in this process)."""
        return self._file is not None and self._pid == os.getpid()

    def acquire(self) -> bool:
        """Take the lock if it is free; True if this object holds it now."""
        if self.held:
            return True
        self._file = None  # a lock inherited through fork is the parent's
        try:
            import fcntl
        except ImportError:  # no flock (Windows): sends may interleave, but stay idempotent
            self._file, self._pid = open(os.devnull, "rb"), os.getpid()  # noqa: SIM115
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "ab")  # noqa: SIM115 (held open while the lock is)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file, self._pid = handle, os.getpid()
        return True

    def release(self) -> None:
        """Let another process send."""
        if self.held and self._file is not None:
            self._file.close()  # closing the file drops the flock
        self._file = None


_SPOOLS: weakref.WeakSet[Spool] = weakref.WeakSet()


def _before_fork() -> None:
    # No thread may be inside SQLite (or hold a spool's lock) while the process forks: the
    # child would inherit the lock held, and wait for it forever.
    for spool in list(_SPOOLS):
        spool._read_lock.acquire()
        spool._lock.acquire()


def _after_fork() -> None:
    for spool in list(_SPOOLS):
        if spool._lock.locked():
            spool._lock.release()
        if spool._read_lock.locked():
            spool._read_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork
    )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _op(row: tuple[Any, ...]) -> Op:
    seq, kind, ref, body, created_at, tries = row
    return Op(int(seq), kind, ref, bytes(body), float(created_at), int(tries))
