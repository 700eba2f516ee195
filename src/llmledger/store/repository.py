"""Reading and writing the ledger: calls (idempotent), runs, status events, run usage."""

from __future__ import annotations

import enum
import functools
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from llmledger.call import Call
from llmledger.errors import ConflictError, UsageError
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import (
    CALL_STATUSES,
    COST_STATUSES,
    RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    TOKEN_COLUMNS,
    TOKEN_PROVENANCES,
    RunStatus,
    TerminalRunStatus,
    calls,
    import_state,
    runs,
    task_status_events,
)
from llmledger.store.types import datetime_to_micros, money_to_pico
from llmledger.totals import Totals
from llmledger.usage import Usage

__all__ = [
    "COPY_TOTAL_COLUMNS",
    "THIS_PROCESS",
    "PriceLike",
    "Repository",
    "driver_executemany",
    "new_run_id",
    "on_larger_copy_sql",
    "raw_insert_sql",
    "raw_upsert_sql",
    "rollup_of",
    "totals_by_run",
]


class PriceLike(Protocol):
    """What the repository needs of a price (``llmledger.pricing.Price`` satisfies it)."""

    @property
    def cost_usd(self) -> Decimal | None: ...
    @property
    def cost_status(self) -> str: ...
    @property
    def price_version(self) -> str | None: ...


class _ThisProcess(enum.Enum):
    PROCESS = "this process"


#: The default owner of a run: this machine (``socket.gethostname()``) and process.
THIS_PROCESS = _ThisProcess.PROCESS

#: The longest run id (the column's width): 32 hex digits of a generated one.
_RUN_ID_LENGTH = 32
#: The longest status event id.
_EVENT_ID_LENGTH = 64


def new_run_id() -> str:
    """A fresh run id: 32 hex digits, unique across processes and machines."""
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


# Columns a larger copy of the same call replaces; where the call was first filed (run,
# session, project) and when it started stay as first recorded.
_REPLACED_ON_LARGER_COPY = (
    *TOKEN_COLUMNS,
    "cost_usd",
    "cost_status",
    "price_version",
    "model",
    "provider",
    "finished_at",
    "duration_ms",
    "status",
    "metadata",
)


#: The token columns whose sum says which of two copies of a call is larger.
COPY_TOTAL_COLUMNS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")

#: Values per ``IN (...)`` of a query.
_IN_CHUNK = 500


def _token_total(table: Any) -> ColumnElement[int]:
    total: ColumnElement[int] = literal(0)
    for name in COPY_TOTAL_COLUMNS:
        total = total + func.coalesce(table[name], 0)
    return total


class Repository:
    """Typed access to the ledger tables of one database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._inclusive_usage: Select[Any] | None = None

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL query written with ``?`` placeholders (the
        :class:`~llmledger.store.sqlite_reader.Reader` protocol the reports use)."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql, tuple(params))]

    # -- calls ---------------------------------------------------------------------------

    def call_rows(
        self,
        items: Iterable[Call],
        *,
        run_id: str | None = None,
        prices: Sequence[PriceLike | None] | None = None,
        recorded_at: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Validate calls and turn them into rows for :meth:`write_call_rows`.

        Raises :class:`UsageError` naming the field for a missing dedupe key, an unknown status
        or cost status; nothing is written then.
        """
        recorded = recorded_at or _now()
        rows: list[dict[str, Any]] = []
        for index, call in enumerate(items):
            price = prices[index] if prices is not None else None
            rows.append(_call_row(call, run_id=run_id, price=price, recorded_at=recorded))
        return rows

    def write_call_rows(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        also: Callable[[Connection], None] | None = None,
    ) -> int:
        """Insert rows in one transaction; returns how many were inserted or replaced.

        A row whose dedupe key is already stored replaces the stored copy only when its token
        total is larger (streaming snapshots); otherwise it changes nothing. ``also`` runs in
        the same transaction (a budget reservation is settled there).
        """
        if not rows:
            return 0
        unique = _largest_per_key(rows)
        with self.engine.begin() as conn:
            written = _write_calls(conn, unique)
            if also is not None:
                also(conn)
            return written

    def add_calls(
        self,
        items: Iterable[Call],
        *,
        run_id: str | None = None,
        prices: Sequence[PriceLike | None] | None = None,
    ) -> int:
        """Validate and store calls idempotently (see :meth:`write_call_rows`)."""
        return self.write_call_rows(self.call_rows(items, run_id=run_id, prices=prices))

    # -- runs ----------------------------------------------------------------------------

    def create_run(
        self,
        kind: str,
        *,
        name: str | None = None,
        key: str | None = None,
        parent_id: str | None = None,
        run_id: str | None = None,
        attempt: int | None = None,
        agent_id: str | None = None,
        agent_ids: Sequence[str] | None = None,
        command_name: str | None = None,
        action: str | None = None,
        invocation_kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        started_at: datetime | None = None,
        owner_host: str | _ThisProcess | None = THIS_PROCESS,
        owner_pid: int | _ThisProcess | None = THIS_PROCESS,
    ) -> str:
        """Create a running run (under ``parent_id`` if given) and return its id.

        A ``run_id`` chosen by the caller (at most 32 characters) makes creation idempotent:
        when a run with that id exists already and has the same ``kind``, nothing is written
        and the id is returned (the stored run keeps its first fields); when it has another
        kind, :class:`UsageError` (field ``id``) is raised. An unknown ``parent_id`` raises
        :class:`UsageError` (field ``parent_id``).

        ``owner_host`` and ``owner_pid`` name the process that owns the run while it runs
        (default: this machine and this process); ``llmledger db repair`` marks a running run
        interrupted when its owner on this machine is gone. A run created for another
        process (the HTTP service creates runs for remote clients) passes ``owner_pid=None``:
        no pid, no repair."""
        if not kind:
            raise UsageError("kind", "a run needs a kind, e.g. 'task' or 'session'")
        if run_id is not None and not 0 < len(run_id) <= _RUN_ID_LENGTH:
            raise UsageError("id", f"a run id has 1 to {_RUN_ID_LENGTH} characters: {run_id!r}")
        host = socket.gethostname() if owner_host is THIS_PROCESS else owner_host
        pid = os.getpid() if owner_pid is THIS_PROCESS else owner_pid
        chosen = run_id
        run_id = run_id or new_run_id()
        try:
            with self.engine.begin() as conn:
                if chosen is not None and _existing_run(conn, chosen, kind):
                    return chosen
                root_id = run_id
                if parent_id is not None:
                    parent_root = conn.execute(
                        select(runs.c.root_id).where(runs.c.id == parent_id)
                    ).scalar_one_or_none()
                    if parent_root is None:
                        raise UsageError("parent_id", f"no run {parent_id!r} in the ledger")
                    root_id = parent_root
                conn.execute(
                    runs.insert().values(
                        id=run_id,
                        parent_id=parent_id,
                        root_id=root_id,
                        kind=kind,
                        name=name,
                        key=key,
                        status="running",
                        attempt=attempt,
                        agent_id=agent_id,
                        agent_ids=list(agent_ids) if agent_ids is not None else None,
                        command_name=command_name,
                        action=action,
                        invocation_kind=invocation_kind,
                        started_at=started_at or _now(),
                        owner_host=host,
                        owner_pid=pid,
                        metadata=dict(metadata) if metadata else None,
                    )
                )
        except IntegrityError:
            # Another writer created the same chosen id between the look and the insert.
            if chosen is None:
                raise
            with self.engine.connect().execution_options(**READ_ONLY) as conn:
                if not _existing_run(conn, chosen, kind):
                    raise
        return run_id

    def finalize_run(
        self,
        run_id: str,
        status: TerminalRunStatus,
        *,
        finished_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        finish_unknown: bool = False,
        idempotent: bool = False,
    ) -> Totals:
        """End a run: write its terminal status and its inclusive usage roll-up in one
        transaction, and return the roll-up.

        ``finished_at`` defaults to now; with ``finish_unknown`` the finish time and duration
        stay NULL. A duration is never negative: a ``finished_at`` before the run's start is
        rejected (:class:`UsageError`), and a run whose start lies ahead of this machine's
        clock (another machine started it) ends now with no duration.

        With ``idempotent`` (a retried request of a remote client), a run that has ended
        already with the same ``status`` keeps its finish time and duration and gets its
        roll-up recomputed (calls that arrived after the first finish are counted);
        ``metadata`` is merged again. A run that ended with another status raises
        :class:`~llmledger.errors.ConflictError` (field ``status``) and is left as it was.
        Without it, finalizing an ended run overwrites its status, times and roll-up."""
        with self.engine.begin() as conn:
            return self._finalize(
                conn,
                run_id,
                status,
                finished_at=finished_at,
                metadata=metadata,
                finish_unknown=finish_unknown,
                idempotent=idempotent,
            )

    def finalize_runs(
        self,
        ends: Iterable[tuple[str, TerminalRunStatus, datetime | None]],
        *,
        idempotent: bool = False,
    ) -> None:
        """:meth:`finalize_run` of each ``(run_id, status, finished_at)`` (``finished_at``
        None: keep an ended run's, else now), all in one transaction: a writer that ends many
        runs at once (the OTLP receiver) pays one commit, not one per run."""
        with self.engine.begin() as conn:
            for run_id, status, finished_at in ends:
                self._finalize(conn, run_id, status, finished_at=finished_at, idempotent=idempotent)

    def _finalize(
        self,
        conn: Connection,
        run_id: str,
        status: TerminalRunStatus,
        *,
        finished_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        finish_unknown: bool = False,
        idempotent: bool = False,
    ) -> Totals:
        if status not in TERMINAL_RUN_STATUSES:
            raise UsageError(
                "status",
                f"unknown terminal status {status!r}; one of {sorted(TERMINAL_RUN_STATUSES)}",
            )
        finished = None if finish_unknown else finished_at or _now()
        query = select(
            runs.c.started_at,
            runs.c.metadata,
            runs.c.status,
            runs.c.finished_at,
            runs.c.duration_ms,
        ).where(runs.c.id == run_id)
        # The row lock (PostgreSQL; SQLite's write transaction serializes anyway) keeps two
        # racing finishes from both seeing the run still running.
        started = conn.execute(query.with_for_update() if idempotent else query).first()
        if started is None:
            raise UsageError("run_id", f"no run {run_id!r} in the ledger")
        ended = idempotent and started.status in TERMINAL_RUN_STATUSES
        if ended and started.status != status:
            raise ConflictError(
                "status",
                f"run {run_id!r} ended {started.status!r} already; it cannot end {status!r}",
            )
        duration_ms = None
        if ended:
            finished, duration_ms = started.finished_at, started.duration_ms
        elif finished is not None and started.started_at is not None:
            duration_ms = int((finished - started.started_at).total_seconds() * 1000)
            if duration_ms < 0 and finished_at is not None:
                raise UsageError(
                    "finished_at",
                    f"{finished_at.isoformat()} is before the run started "
                    f"({started.started_at.isoformat()}); a duration is never negative",
                )
            if duration_ms < 0:
                duration_ms = None
        if self._inclusive_usage is None:  # built once: building it costs more than running it
            self._inclusive_usage = self._usage_query("", True)
        totals = Totals.total(
            _totals_from_row(row)
            for row in conn.execute(self._inclusive_usage, {"root": run_id}).mappings()
        )
        values: dict[str, Any] = {
            "status": status,
            "finished_at": finished,
            "duration_ms": duration_ms,
            **{name: getattr(totals.usage, name) for name in TOKEN_COLUMNS},
            "cost_usd": totals.cost_usd,
            "unpriced_calls": totals.unpriced_calls,
            "call_count": totals.calls,
        }
        if metadata:
            values["metadata"] = {**(started.metadata or {}), **metadata}
        conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
        return totals

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run's row as a dict, or None."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
            return dict(row) if row is not None else None

    def set_run_status(self, run_id: str, status: RunStatus) -> None:
        """Change a run's status without finalizing it (e.g. back to running on resume)."""
        if status not in RUN_STATUSES:
            raise UsageError("status", f"unknown status {status!r}; one of {sorted(RUN_STATUSES)}")
        with self.engine.begin() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(status=status))

    # -- status events -------------------------------------------------------------------

    def add_status_event(
        self,
        to_status: str,
        *,
        run_id: str | None = None,
        task_key: str | None = None,
        from_status: str | None = None,
        at: datetime | None = None,
        command_name: str | None = None,
        job: str | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        event_id: str | None = None,
        project: str | None = None,
    ) -> bool:
        """Record that a task moved from one status to another (for velocity and ETA).

        ``event_id`` (at most 64 characters) makes the record idempotent: an event whose id is
        stored already is not stored again. Returns True when the event was stored, False
        when its id was stored already. Events without an id are always stored."""
        if not to_status:
            raise UsageError("to_status", "a status event needs the status it moved to")
        if run_id is None and task_key is None:
            raise UsageError("task_key", "a status event needs a run_id or a task_key")
        if event_id is not None and not 0 < len(event_id) <= _EVENT_ID_LENGTH:
            raise UsageError("event_id", f"an event id has 1 to {_EVENT_ID_LENGTH} characters")
        values = {
            "run_id": run_id,
            "task_key": task_key,
            "from_status": from_status,
            "to_status": to_status,
            "at": at or _now(),
            "command_name": command_name,
            "job": job,
            "agent_id": agent_id,
            "metadata": dict(metadata) if metadata else None,
            "event_id": event_id,
            "project": project,
        }
        insert = _dialect_insert(self.dialect)(task_status_events).values(**values)
        if event_id is not None:
            insert = insert.on_conflict_do_nothing(index_elements=["event_id"])
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # psycopg's rowcount does not tell an insert from a conflict: ask for the row.
                returning = insert.returning(task_status_events.c.id)
                return conn.execute(returning).first() is not None
            return bool(conn.execute(insert).rowcount)

    # -- usage ---------------------------------------------------------------------------

    def _usage_query(self, run_id: str, inclusive: bool) -> Select[Any]:
        if inclusive:
            base = select(runs.c.id).where(runs.c.id == bindparam("root", run_id))
            tree = base.cte("subtree", recursive=True)
            tree = tree.union_all(select(runs.c.id).where(runs.c.parent_id == tree.c.id))
            where: ColumnElement[bool] = calls.c.run_id.in_(select(tree.c.id))
        else:
            where = calls.c.run_id == run_id
        return (
            select(calls.c.model, *_usage_columns())
            .where(where)
            .group_by(calls.c.model)
            .order_by(calls.c.model)
        )

    def last_call_at(self, run_id: str) -> datetime | None:
        """When the last call of the run's subtree happened (its finish, else its start, else
        when it was recorded); None when the subtree has no call."""
        tree = select(runs.c.id).where(runs.c.id == run_id).cte("subtree", recursive=True)
        tree = tree.union_all(select(runs.c.id).where(runs.c.parent_id == tree.c.id))
        at = func.max(func.coalesce(calls.c.finished_at, calls.c.started_at, calls.c.recorded_at))
        query = select(at.label("at")).where(calls.c.run_id.in_(select(tree.c.id)))
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            value: datetime | None = conn.execute(query).scalar_one()
        return value

    def run_usage(self, run_id: str, *, inclusive: bool = False) -> dict[str | None, Totals]:
        """Usage and cost by model of a run's own calls, or (``inclusive``) of its whole
        subtree. Buckets no call reported stay None."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execute(self._usage_query(run_id, inclusive)).mappings().all()
        return {row["model"]: _totals_from_row(row) for row in rows}

    def delete_imported_copies(
        self,
        log_source: str,
        *,
        message_ids: Iterable[str],
        session_id: str | None,
        since: datetime,
        until: datetime,
    ) -> int:
        """Delete calls imported from agent logs (``log_source``) that a live record of the
        same calls supersedes: calls with one of ``message_ids``, or calls of ``session_id``
        between ``since`` and ``until``. Returns how many were deleted."""
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
        with self.engine.begin() as conn:
            deleted = conn.execute(
                calls.delete().where(calls.c.source == log_source, or_(*matches))
            ).rowcount
        return max(int(deleted), 0)

    def counts(self) -> dict[str, int]:
        """Row counts of the ledger's tables."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return {
                table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
                for table in (runs, calls, task_status_events, import_state)
            }


_CALL_COLUMNS = [column.name for column in calls.columns if column.name != "id"]


def raw_insert_sql(
    dialect: str, columns: Sequence[str], fixed: Sequence[tuple[str, Any]] = ()
) -> str:
    """A plain insert of calls as driver SQL, for bulk writers that hand the driver's
    ``executemany`` values already in their stored form (integer pico-dollars and
    microseconds, JSON text) in the order of ``columns``. ``fixed`` (column, value) pairs
    are written into the SQL instead (NULL, integers and text only): the same on every row,
    they cost nothing to bind."""
    mark = "?" if dialect == "sqlite" else "%s"
    values = [
        f"CAST({mark} AS jsonb)" if name == "metadata" and dialect != "sqlite" else mark
        for name in columns
    ]
    names = [*columns, *(name for name, _ in fixed)]
    values += [_sql_literal(dialect, value) for _, value in fixed]
    return f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join(values)})"


def _sql_literal(dialect: str, value: Any) -> str:
    if value is None:
        return "NULL"
    if type(value) is int:
        return str(value)
    if type(value) is str and "\0" not in value:
        text = "'" + value.replace("'", "''") + "'"
        # psycopg reads % in the SQL as a parameter mark.
        return text if dialect == "sqlite" else text.replace("%", "%%")
    raise TypeError(f"no SQL literal for {value!r}")


def raw_upsert_sql(
    dialect: str, columns: Sequence[str], fixed: Sequence[tuple[str, Any]] = ()
) -> str:
    """The call upsert of :meth:`Repository.write_call_rows` as driver SQL: the insert of
    :func:`raw_insert_sql`, where a copy of a stored call replaces it only when larger."""
    return f"{raw_insert_sql(dialect, columns, fixed)} {on_larger_copy_sql()}"


@functools.cache
def on_larger_copy_sql() -> str:
    """The ``ON CONFLICT`` clause of the call upsert: a copy of a stored call replaces it
    only when its total of :data:`COPY_TOTAL_COLUMNS` is larger."""
    total_new = " + ".join(f"COALESCE(excluded.{n}, 0)" for n in COPY_TOTAL_COLUMNS)
    total_old = " + ".join(f"COALESCE(calls.{n}, 0)" for n in COPY_TOTAL_COLUMNS)
    return (
        "ON CONFLICT (dedupe_key) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in _REPLACED_ON_LARGER_COPY)
        + f" WHERE ({total_new}) > ({total_old})"
    )


def _stored_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in ("started_at", "finished_at", "recorded_at"):
        return datetime_to_micros(value)
    if name == "cost_usd":
        return money_to_pico(value)
    if name == "metadata":
        return orjson.dumps(value, default=str).decode()
    return value


@functools.cache
def _calls_upsert(dialect: str) -> str:
    return raw_upsert_sql(dialect, _CALL_COLUMNS)


def driver_executemany(conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> int:
    """Run driver SQL once per row through the DB-API cursor of ``conn`` (inside its
    transaction) and return how many rows it inserted or changed.

    Several times faster than SQLAlchemy's per-row bind processing (and, on PostgreSQL, than
    RETURNING); 20% faster than ``exec_driver_sql``, which copies the parameters."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.executemany(sql, rows)
        return max(int(cursor.rowcount), 0)
    finally:
        cursor.close()


def _write_calls(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    # Values are converted to their stored form once here; the driver's rowcount counts
    # inserts and replacements.
    values = [tuple(_stored_value(name, row.get(name)) for name in _CALL_COLUMNS) for row in rows]
    if conn.dialect.name == "postgresql":
        # One statement per batch (COPY into a temporary table), not one per row.
        from llmledger.store.pg_write import upsert_calls

        return upsert_calls(conn, _CALL_COLUMNS, values)
    return driver_executemany(conn, _calls_upsert(conn.dialect.name), values)


def _row_total(row: Mapping[str, Any]) -> int:
    return sum(row[name] or 0 for name in COPY_TOTAL_COLUMNS)


def _largest_per_key(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # One statement may not touch a key twice (PostgreSQL refuses), so copies within a batch
    # are settled here by the same rule as the store's: the larger token total wins.
    best: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        key = row["dedupe_key"]
        kept = best.get(key)
        if kept is None or _row_total(row) > _row_total(kept):
            best[key] = row
    return list(best.values())


def _usage_columns() -> list[ColumnElement[Any]]:
    return [
        *(func.sum(calls.c[name]).label(name) for name in TOKEN_COLUMNS),
        func.sum(calls.c.cost_usd).label("cost_usd"),
        func.sum(case((calls.c.cost_usd.is_(None), 1), else_=0)).label("unpriced_calls"),
        func.count().label("calls"),
    ]


def _totals_from_row(row: Any) -> Totals:
    usage = Usage.of_sums(**{name: _int(row[name]) for name in TOKEN_COLUMNS})
    return Totals(
        usage=usage,
        # SUM keeps the Money type, so the amount arrives as a Decimal (or None).
        cost_usd=row["cost_usd"],
        unpriced_calls=int(row["unpriced_calls"] or 0),
        calls=int(row["calls"]),
    )


def totals_by_run(conn: Connection, run_ids: Select[Any]) -> dict[str, Totals]:
    """Own usage of each run whose id ``run_ids`` (a subquery) selects, keyed by run id."""
    query = (
        select(calls.c.run_id, *_usage_columns())
        .where(calls.c.run_id.in_(run_ids))
        .group_by(calls.c.run_id)
    )
    return {row["run_id"]: _totals_from_row(row) for row in conn.execute(query).mappings()}


def rollup_of(run_row: Mapping[str, Any]) -> Totals:
    """The inclusive usage roll-up stored on a finalized run's row."""
    return Totals(
        usage=Usage.of_sums(**{name: _int(run_row[name]) for name in TOKEN_COLUMNS}),
        cost_usd=run_row["cost_usd"],
        unpriced_calls=int(run_row["unpriced_calls"] or 0),
        calls=int(run_row["call_count"] or 0),
    )


def _existing_run(conn: Connection, run_id: str, kind: str) -> bool:
    """Whether run ``run_id`` exists (with ``kind``); UsageError when it has another kind."""
    stored = conn.execute(select(runs.c.kind).where(runs.c.id == run_id)).scalar_one_or_none()
    if stored is None:
        return False
    if stored != kind:
        raise UsageError("id", f"run {run_id!r} exists already with kind {stored!r}, not {kind!r}")
    return True


def _dialect_insert(dialect: str) -> Any:
    # Both dialects' insert() build INSERT ... ON CONFLICT DO NOTHING.
    if dialect == "postgresql":
        return postgresql_insert
    return sqlite_insert


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _call_row(
    call: Call, *, run_id: str | None, price: PriceLike | None, recorded_at: datetime
) -> dict[str, Any]:
    if not call.dedupe_key:
        raise UsageError(
            "dedupe_key",
            "missing: a stored call needs a key that identifies it across copies "
            "(message/request id, or Call.key() for a content hash)",
        )
    if call.status not in CALL_STATUSES:
        raise UsageError("status", f"unknown call status {call.status!r}; one of ok, error")
    if call.token_provenance not in TOKEN_PROVENANCES:
        raise UsageError(
            "token_provenance", f"unknown {call.token_provenance!r}; one of reported, estimated"
        )
    if price is not None:
        cost, cost_status, version = price.cost_usd, price.cost_status, price.price_version
    elif call.reported_cost_usd is not None:
        cost, cost_status, version = call.reported_cost_usd, "reported", None
    else:
        cost, cost_status, version = None, "unpriced", None
    if cost_status not in COST_STATUSES:
        raise UsageError("cost_status", f"unknown {cost_status!r}; one of {sorted(COST_STATUSES)}")
    if cost is not None and cost < 0:
        raise UsageError("cost_usd", f"must not be negative, got {cost}")
    usage = call.usage
    return {
        "dedupe_key": call.dedupe_key,
        "run_id": run_id,
        "source": call.source,
        "provider": call.provider,
        "model": call.model,
        "message_id": call.message_id,
        "request_id": call.request_id,
        "session_id": call.session_id,
        "project": call.project,
        "agent_id": call.agent_id,
        "started_at": call.started_at,
        "finished_at": call.finished_at,
        "duration_ms": call.duration_ms,
        "input_tokens": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "cache_write_5m_tokens": usage.cache_write_5m_tokens,
        "cache_write_1h_tokens": usage.cache_write_1h_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "cost_usd": cost,
        "cost_status": cost_status,
        "currency": "USD",
        "price_version": version,
        "status": call.status,
        "token_provenance": call.token_provenance,
        "metadata": call.metadata or None,
        "recorded_at": recorded_at,
        "host": call.host,
        "subagent": call.subagent,
        "subagent_type": call.subagent_type,
        "branch": call.branch,
        "cwd": call.cwd,
    }
