"""Sending this machine's agent logs to a llmledger server: ``llmledger import --to URL``.

The logs are imported as always (incrementally, copies settled: :mod:`.pipeline`) into a
*staging ledger*: a SQLite ledger of this machine kept for that server alone
(:func:`staging_path`: ``staging/<hash of the URL>.db`` in the user data directory, or in
``$LLMLEDGER_STAGING_DIR``). The calls the server has not acknowledged yet are then posted to
``POST /v1/calls`` in batches of :data:`BATCH_SIZE` (:data:`CONCURRENCY` on the wire at once)
as ``{"items": [{"call": <CallRecord>}], "host": <host>}``, each call tagged with this
machine's host name (or the one ``--host`` names).

What the server still lacks
---------------------------
The staging ledger holds one more table, ``ship_pending(call_id, version)``: the ids of the
calls not acknowledged yet. Three triggers on ``calls`` keep it, inside the import's own
transaction:

- an insert (a new call) adds the call's id;
- an update adds it too. The import's upsert updates a stored call only when a larger copy
  replaces it, so a replaced call is sent again (and the server's upsert keeps the larger
  copy). An id already pending has its ``version`` raised instead;
- a delete (a sidechain copy yielding to its parent) drops it.

Sending reads the pending calls in id order, posts them, and only once the server answered
200 for a batch deletes its rows from ``ship_pending`` -- each only if its version is still
the one read, so a copy that replaced a call while it was on the wire stays pending. Hence:

- a re-run with nothing new reads an empty table and sends nothing;
- a server that is down, a network error or a killed process leaves the unacknowledged calls
  pending: the next run sends them again, and the server, which dedupes on the calls'
  ``dedupe_key``, counts those it has as duplicates. Nothing is lost, nothing doubled;
- a call the server rejects (its ``rejected`` list) stays pending too, and is named: it goes
  in once the server takes it (e.g. after an upgrade), never silently dropped.

The triggers are installed the first time, and again whenever they are missing (a migration
that rebuilt ``calls`` drops them): every stored call is then marked pending, and the server
counts those it has as duplicates. A watermark (the largest id or ``recorded_at`` sent) would
be cheaper to keep but miss the replacements (an upsert keeps the row's id) and trust a
clock that can go back.

Not sent: deletions. A call deleted from the staging ledger after it was sent (a sidechain
copy imported before its parent, in a later import) stays on the server; the service has no
delete. Session runs are not sent either: the server's reports read the calls' own session,
project and agent columns.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from llmledger.agents import AGENTS
from llmledger.errors import LedgerError
from llmledger.records import PLAIN_FIELDS
from llmledger.usage import BUCKETS as TOKEN_COLUMNS  # the calls table's token columns

if TYPE_CHECKING:
    import httpx

    from llmledger.imports.pipeline import Progress
    from llmledger.imports.summary import ImportSummary

__all__ = [
    "BATCH_SIZE",
    "CONCURRENCY",
    "STAGING_ENV",
    "SendError",
    "SendSummary",
    "import_to",
    "mark_changes",
    "pending_count",
    "send_pending",
    "server_url",
    "staging_path",
]

#: Calls per ``POST /v1/calls``.
BATCH_SIZE = 500
#: Batches on the wire at once.
CONCURRENCY = 2
#: The directory of the staging ledgers, instead of ``staging/`` in the user data directory.
STAGING_ENV = "LLMLEDGER_STAGING_DIR"
#: How many rejected calls a summary names.
_MAX_ERRORS = 10
#: Attempts at one batch while the server is unreachable or answers 5xx/408/429.
_ATTEMPTS = 4
#: Seconds before the first retry (doubled each time); Retry-After wins, up to _MAX_WAIT.
_FIRST_WAIT = 0.5
_MAX_WAIT = 10.0
#: Statuses worth retrying: the server is busy, restarting or its store is unreachable.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

_TRIGGERS = ("ship_pending_insert", "ship_pending_update", "ship_pending_delete")
_MARK = (
    "INSERT INTO ship_pending (call_id) VALUES (new.id) "
    "ON CONFLICT (call_id) DO UPDATE SET version = version + 1"
)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ship_pending "
    "(call_id INTEGER PRIMARY KEY, version INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS ship_state (name TEXT PRIMARY KEY, value TEXT)",
    f"CREATE TRIGGER IF NOT EXISTS ship_pending_insert AFTER INSERT ON calls BEGIN {_MARK}; END",
    f"CREATE TRIGGER IF NOT EXISTS ship_pending_update AFTER UPDATE ON calls BEGIN {_MARK}; END",
    "CREATE TRIGGER IF NOT EXISTS ship_pending_delete AFTER DELETE ON calls BEGIN "
    "DELETE FROM ship_pending WHERE call_id = old.id; END",
)
_COLUMNS = (
    "dedupe_key",
    "source",
    "provider",
    "model",
    "message_id",
    "request_id",
    "session_id",
    "project",
    "agent_id",
    "subagent",
    "subagent_type",
    "branch",
    "cwd",
    "started_at",
    "finished_at",
    "duration_ms",
    *TOKEN_COLUMNS,
    "cost_usd",
    "cost_status",
    "status",
    "token_provenance",
    "metadata",
)
_SELECT = (
    "SELECT p.call_id, p.version, "
    + ", ".join(f"c.{name}" for name in _COLUMNS)
    + " FROM ship_pending p JOIN calls c ON c.id = p.call_id"
    " WHERE p.call_id > ? ORDER BY p.call_id LIMIT ?"
)
_AT = {name: i + 2 for i, name in enumerate(_COLUMNS)}
_TOKENS = slice(_AT[TOKEN_COLUMNS[0]], _AT[TOKEN_COLUMNS[-1]] + 1)
#: The record's fields taken as stored (when known), and its times.
_PLAIN = tuple((name, _AT[name]) for name in PLAIN_FIELDS if name != "host")  # host: ours
_TIMES = (("started_at", _AT["started_at"]), ("finished_at", _AT["finished_at"]))
_COST, _COST_STATUS, _STATUS, _PROVENANCE, _METADATA = (
    _AT[name] for name in ("cost_usd", "cost_status", "status", "token_provenance", "metadata")
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Metadata the server works out again with its own prices.
_SERVER_SIDE = ("computed_cost_pico",)

#: Called with (calls sent, calls to send) after each acknowledged batch.
SendProgress = Callable[[int, int], None]


class SendError(LedgerError):
    """The server could not be reached or refused a batch as a whole; what was not
    acknowledged stays pending in the staging ledger. ``summary`` is what was sent before."""

    summary: SendSummary | None = None


@dataclass(slots=True)
class SendSummary:
    """What a send did: calls the server acknowledged (``sent`` = ``accepted`` new or replaced
    + ``duplicates`` it already had), calls it ``rejected`` (still pending, the first few
    named in ``errors``) and how many are ``pending`` now."""

    url: str
    staging: str
    host: str
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values."""
        return {
            "url": self.url,
            "staging": self.staging,
            "host": self.host,
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "batches": self.batches,
            "pending": self.pending,
            "errors": list(self.errors),
        }


def import_to(
    url: str,
    agents: Iterable[str] = AGENTS,
    paths: Sequence[str | Path] | None = None,
    *,
    api_key: str | None = None,
    host: str | None = None,
    staging_dir: str | Path | None = None,
    prices: str | None = None,
    progress: Progress | None = None,
    send_progress: SendProgress | None = None,
    transport: httpx.BaseTransport | None = None,
    first_wait: float = _FIRST_WAIT,
) -> tuple[ImportSummary, SendSummary]:
    """Import what is new in the logs of ``agents`` (under ``paths``) into the staging
    ledger of the server at ``url`` (:func:`staging_path`, in ``staging_dir`` if given), then
    send the server every call it has not acknowledged yet (:func:`send_pending`).

    Returns the import's summary and the send's. Raises :class:`SendError` when the server
    cannot be reached or refuses the batches (the import is kept: the next call sends it)."""
    from llmledger.imports.pipeline import run_import

    url = server_url(url)
    path = staging_path(url, staging_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    imported = run_import(f"sqlite:///{path}", agents, paths, prices=prices, progress=progress)
    mark_changes(path, url)
    sent = send_pending(
        path,
        url,
        api_key=api_key,
        host=host,
        progress=send_progress,
        transport=transport,
        first_wait=first_wait,
    )
    return imported, sent


def server_url(url: str) -> str:
    """``url`` checked to be an http(s) server URL, without a trailing slash; raises
    :class:`ValueError` saying what to write instead."""
    stripped = url.strip().rstrip("/")
    scheme, _, rest = stripped.partition("://")
    if scheme.lower() not in ("http", "https") or not rest:
        raise ValueError(
            f"{url!r} is not a server URL: write http://HOST:PORT or https://HOST "
            "(the address `llmledger serve` listens on)"
        )
    return stripped


def staging_path(url: str, directory: str | Path | None = None) -> Path:
    """The staging ledger of the server at ``url``: ``<sha256(url)[:16]>.db`` in
    ``directory``, else ``$LLMLEDGER_STAGING_DIR``, else ``staging/`` in the user data
    directory. One per server, so that each server gets every call once."""
    if directory is None:
        directory = os.environ.get(STAGING_ENV) or None
    if directory is None:
        import platformdirs

        directory = Path(platformdirs.user_data_dir("llmledger", appauthor=False)) / "staging"
    digest = hashlib.sha256(server_url(url).encode()).hexdigest()[:16]
    return Path(directory).expanduser() / f"{digest}.db"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    return conn


def mark_changes(path: Path, url: str) -> None:
    """Make sure the staging ledger at ``path`` tracks the calls to send (``ship_pending``
    and its triggers; see the module's docstring). Where a trigger is missing -- the first
    time, or after a migration rebuilt ``calls`` -- every stored call is marked pending."""
    if not path.exists():
        return  # no import wrote it yet: nothing to send
    conn = _connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'calls'").fetchone() is None:
            conn.execute("ROLLBACK")
            return
        marks = ", ".join("?" * len(_TRIGGERS))
        found = conn.execute(
            f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})",
            _TRIGGERS,
        ).fetchone()[0]
        if found < len(_TRIGGERS):
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO ship_pending (call_id) SELECT id FROM calls")
        conn.execute(
            "INSERT INTO ship_state (name, value) VALUES ('url', ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (url,),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def pending_count(path: Path) -> int:
    """How many calls of the staging ledger at ``path`` the server has not acknowledged."""
    if not path.exists():
        return 0
    conn = _connect(path)
    try:
        return _count(conn) if _tracked(conn) else 0
    finally:
        conn.close()


def _tracked(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ship_pending'").fetchone()
        is not None
    )


def send_pending(
    path: Path,
    url: str,
    *,
    api_key: str | None = None,
    host: str | None = None,
    progress: SendProgress | None = None,
    transport: httpx.BaseTransport | None = None,
    batch_size: int = BATCH_SIZE,
    concurrency: int = CONCURRENCY,
    first_wait: float = _FIRST_WAIT,
) -> SendSummary:
    """Post the pending calls of the staging ledger at ``path`` to the server at ``url``
    (``POST /v1/calls``, ``batch_size`` calls at a time, ``Authorization: Bearer api_key``),
    each tagged with ``host`` (default: this machine's host name); mark each batch sent once
    the server acknowledged it. Up to ``concurrency`` batches are on the wire at once (the
    next one is read and encoded meanwhile).

    An unreachable server, or one answering 5xx, 408 or 429, is tried again a few times,
    ``first_wait`` seconds after the first failure and twice as long each time (its
    ``Retry-After`` wins); then :class:`SendError`, and what was not acknowledged stays
    pending for the next send. So does a 401/403/404 answer, at once. ``transport`` replaces
    the network (tests)."""
    import httpx

    url = server_url(url)
    host = host or socket.gethostname()
    summary = SendSummary(url=url, staging=str(path), host=host)
    if not path.exists():
        return summary
    conn = _connect(path)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        if not _tracked(conn):
            return summary
        with (
            httpx.Client(
                base_url=url,
                headers=headers,
                timeout=httpx.Timeout(120.0, connect=10.0),
                transport=transport,
                limits=httpx.Limits(max_connections=concurrency),
            ) as client,
            ThreadPoolExecutor(concurrency, thread_name_prefix="llmledger-send") as pool,
        ):
            deliver = partial(_deliver, client, url, host, first_wait)
            _pipeline(conn, summary, deliver, pool, concurrency, batch_size, progress)
        if summary.sent:
            conn.execute(
                "INSERT INTO ship_state (name, value) VALUES ('last_sent_at', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (datetime.now(UTC).isoformat(),),
            )
        summary.pending = _count(conn)
    finally:
        conn.close()
    return summary


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM ship_pending").fetchone()[0])


def _batches(conn: sqlite3.Connection, size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The pending calls, ``size`` at a time, in id order (each batch read anew, so that
    what an earlier batch left pending is not read twice)."""
    last = 0
    while True:
        rows = conn.execute(_SELECT, (last, size)).fetchall()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _records(
    rows: Sequence[tuple[Any, ...]], host: str
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The CallRecord JSON of each row, and why the rows that make none (by index) do not
    (a row no import writes: they stay pending, named)."""
    records: list[dict[str, Any]] = []
    bad: dict[int, str] = {}
    for i, row in enumerate(rows):
        try:
            records.append(_record(row, host))
        except ValueError as exc:  # metadata that is not JSON: no import writes it
            bad[i] = str(exc)
    return records, bad


def _record(row: tuple[Any, ...], host: str) -> dict[str, Any]:
    """The canonical JSON of a stored call (what :func:`~llmledger.records.record_of_call`
    makes of it, built straight from the row: the send's main cost): what the source
    reported of the call. The server prices it again, except a cost the source reported,
    which stays reported."""
    # The checks of a record's usage and fields are the server's: a stored call passed the
    # same ones when it was imported.
    counts = zip(TOKEN_COLUMNS, row[_TOKENS], strict=True)
    usage = {name: value for name, value in counts if value is not None}
    record: dict[str, Any] = {"usage": usage}
    for name, at in _PLAIN:
        value = row[at]
        if value is not None:
            record[name] = value
    record["host"] = host
    for name, at in _TIMES:
        if row[at] is not None:
            record[name] = (_EPOCH + timedelta(microseconds=row[at])).isoformat()
    if row[_COST_STATUS] == "reported" and row[_COST] is not None:
        record["reported_cost_usd"] = str(Decimal(row[_COST]).scaleb(-12))
    if row[_STATUS] != "ok":
        record["status"] = row[_STATUS]
    if row[_PROVENANCE] != "reported":
        record["token_provenance"] = row[_PROVENANCE]
    if row[_METADATA]:
        metadata = orjson.loads(row[_METADATA])
        if isinstance(metadata, dict):
            for name in _SERVER_SIDE:
                metadata.pop(name, None)
            if metadata:
                record["metadata"] = metadata
    return record


#: A batch's rows and the server's answer to them: (accepted, duplicates, rejected by index).
_Answer = tuple[list[tuple[Any, ...]], int, int, dict[int, str]]


def _pipeline(
    conn: sqlite3.Connection,
    summary: SendSummary,
    deliver: Callable[[list[tuple[Any, ...]], list[dict[str, Any]]], list[_Answer]],
    pool: ThreadPoolExecutor,
    concurrency: int,
    batch_size: int,
    progress: SendProgress | None,
) -> None:
    """Read, encode and hand batches to ``deliver`` on ``pool``, ``concurrency`` at a time;
    mark each acknowledged batch sent (in this thread: the staging ledger's connection is
    this thread's). After a failure nothing more is sent; the batches on the wire finish
    (and are marked if acknowledged), then the failure is raised."""
    total = _count(conn)
    batches = _batches(conn, batch_size)
    sizes: dict[Future[list[_Answer]], int] = {}
    failure: SendError | None = None
    done = 0
    while True:
        while failure is None and len(sizes) < concurrency:
            batch = next(batches, None)
            if batch is None:
                break
            records, bad = _records(batch, summary.host)
            for index, error in bad.items():
                _reject(summary, batch[index][2], error)
            rows = [row for i, row in enumerate(batch) if i not in bad]
            if records:
                sizes[pool.submit(deliver, rows, records)] = len(batch)
            else:
                done += len(batch)
        if not sizes:
            break
        finished, _ = wait(sizes, return_when=FIRST_COMPLETED)
        for future in finished:
            done += sizes.pop(future)
            try:
                answers = future.result()
            except SendError as exc:
                failure = failure or exc
                continue
            for answer in answers:
                _acknowledge(conn, summary, answer)
            if progress is not None:
                progress(done, total)
    if failure is not None:
        summary.pending = _count(conn)
        failure.summary = summary
        raise failure


def _deliver(
    client: httpx.Client,
    url: str,
    host: str,
    first_wait: float,
    rows: list[tuple[Any, ...]],
    records: list[dict[str, Any]],
) -> list[_Answer]:
    """Post one batch (on a pool thread); on 413 (too large for the server) post each half.
    The server's answer to each part posted; :class:`SendError` when it refuses one."""
    body = orjson.dumps({"items": [{"call": r} for r in records], "host": host})
    response = _post(client, body, first_wait)
    if response.status_code == 413 and len(records) > 1:
        half = len(records) // 2
        return _deliver(client, url, host, first_wait, rows[:half], records[:half]) + _deliver(
            client, url, host, first_wait, rows[half:], records[half:]
        )
    if response.status_code != 200:
        raise SendError(_refusal(url, response))
    try:
        answer = response.json()
        accepted = int(answer["accepted"])
        duplicates = int(answer["duplicates"])
        rejected = {int(r["index"]): str(r["error"]) for r in answer.get("rejected") or ()}
    except (ValueError, KeyError, TypeError) as exc:
        raise SendError(
            f"{url} answered POST /v1/calls with something other than a llmledger "
            f"batch result ({type(exc).__name__}): is it a llmledger server?"
        ) from None
    return [(rows, accepted, duplicates, rejected)]


def _acknowledge(conn: sqlite3.Connection, summary: SendSummary, answer: _Answer) -> None:
    """Mark what the server acknowledged as sent: every call of the batch but those it
    rejected, each only if no larger copy replaced it meanwhile (its version)."""
    rows, accepted, duplicates, rejected = answer
    for index, error in sorted(rejected.items()):
        if 0 <= index < len(rows):
            _reject(summary, rows[index][2], error)
    done = [(row[0], row[1]) for i, row in enumerate(rows) if i not in rejected]
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM ship_pending WHERE call_id = ? AND version = ?", done)
    conn.execute("COMMIT")
    summary.batches += 1
    summary.sent += len(done)
    summary.accepted += accepted
    summary.duplicates += duplicates


def _reject(summary: SendSummary, key: str, error: str) -> None:
    summary.rejected += 1
    if len(summary.errors) < _MAX_ERRORS:
        summary.errors.append(f"call {key}: {error}")


def _post(client: httpx.Client, body: bytes, first_wait: float) -> httpx.Response:
    """POST a batch, trying again while the server is unreachable or busy."""
    import httpx

    wait = first_wait
    for attempt in range(_ATTEMPTS):
        last = attempt == _ATTEMPTS - 1
        try:
            response = client.post("/v1/calls", content=body)
        except httpx.TransportError as exc:
            if last:
                raise SendError(
                    f"cannot reach {client.base_url} ({type(exc).__name__}: {exc}); "
                    "the calls not sent stay staged, and the next `llmledger import --to` "
                    "sends them"
                ) from None
            time.sleep(wait)
        else:
            if response.status_code not in _RETRY_STATUSES or last:
                return response
            time.sleep(_retry_after(response, wait))
        wait *= 2
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "")), 0.0), _MAX_WAIT)
    except ValueError:
        return default


def _refusal(url: str, response: httpx.Response) -> str:
    """What a non-200 answer to a batch means, and what to do."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    said = f": {detail}" if isinstance(detail, str) else ""
    status = response.status_code
    if status == 401:
        hint = (
            "the server wants an API key: pass --api-key or set LLMLEDGER_API_KEY "
            "(a key with the ingest scope, from `llmledger keys create NAME --scope ingest`)"
        )
    elif status == 403:
        hint = "the API key lacks the ingest scope: use an ingest or admin key"
    elif status == 404:
        hint = "no POST /v1/calls there: is the URL a llmledger server (`llmledger serve`)?"
    elif status in _RETRY_STATUSES:
        hint = "the server kept failing; the calls not sent stay staged for the next send"
    else:
        hint = "the server refused the batch"
    return f"{url} answered {status}{said}; {hint}"
