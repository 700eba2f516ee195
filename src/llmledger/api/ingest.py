"""The writes: runs, calls, finishes and task status events; each one idempotent, so a client
may retry any of them blindly and the ledger holds the result once.

- ``POST /v1/runs``: a run with a client-chosen ``id`` is created once; posting it again
  returns it (200 instead of 201).
- ``POST /v1/calls``, ``POST /v1/runs/{id}/calls``: each call is stored under its dedupe key
  (a content hash when its source has no id), so a resent batch stores nothing twice.
- ``POST /v1/runs/{id}/finish``: the same status again recomputes the roll-up (late calls
  counted); another status is a 409.
- ``POST /v1/tasks/{key}/status``: one event per event id (given, or a hash of the body).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import BigInteger, Integer, String, Text, select

from llmledger.agents import CLAUDE
from llmledger.api.app import pricer, repository
from llmledger.api.auth import require
from llmledger.api.errors import error_responses
from llmledger.api.models import (
    MAX_BATCH_ITEMS,
    CallBatch,
    CallBatchResult,
    PayloadItem,
    RunCreate,
    RunFinish,
    RunJSON,
    RunResult,
    StatusEventCreate,
    StatusEventResult,
    storable_problem,
)
from llmledger.call import Call
from llmledger.errors import UsageError
from llmledger.forecast.status import write_status
from llmledger.payloads import calls_in, missing_flags, price_call, price_calls
from llmledger.pricing import Price, Pricer
from llmledger.records import CallRecord, call_of_record
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import calls, runs

__all__ = ["ingest_calls", "router", "unstorable"]

_log = logging.getLogger("llmledger.api")

router = APIRouter(
    prefix="/v1",
    tags=["writes"],
    dependencies=[Depends(require("ingest"))],
    # 413: any body over 16 MiB (a batch over 1000 items, too).
    responses=error_responses(401, 403, 413),
)

Repo = Annotated[Repository, Depends(repository)]
ServerPricer = Annotated[Pricer, Depends(pricer)]

_RECORDS = TypeAdapter(list[CallRecord])
_JSON = "application/json"


# -- runs --------------------------------------------------------------------------------


@router.post(
    "/runs",
    status_code=201,
    response_model=RunResult,
    summary="Open a run (idempotent with a client-chosen id)",
    responses={
        200: {"model": RunResult, "description": "A run with this id exists (same kind)"},
        **error_responses(404, 409),
    },
)
def create_run(body: RunCreate, response: Response, repo: Repo) -> dict[str, Any]:
    """Create a running run, under ``parent_id`` or under the newest run whose key is
    ``parent_key``. 201 with the run; 200 with the stored run when one with this ``id`` exists
    (same kind); 409 when it exists with another kind; 404 for an unknown parent."""
    if body.id is not None:
        existing = repo.get_run(body.id)
        if existing is not None:
            _same_kind(body.id, existing["kind"], body.kind)
            response.status_code = 200
            return {"run": run_json(repo, body.id)}
    parent_id = body.parent_id
    if body.parent_key is not None:
        parent_id = _newest_with_key(repo, body.parent_key)
        if parent_id is None:
            raise HTTPException(404, f"parent_key: no run with key {body.parent_key!r}")
    metadata = dict(body.metadata or {})
    if body.host is not None:
        metadata["host"] = body.host
    try:
        run_id = repo.create_run(
            body.kind,
            run_id=body.id,
            name=body.name,
            key=body.key,
            parent_id=parent_id,
            attempt=body.attempt,
            agent_id=body.agent_id,
            agent_ids=body.agent_ids,
            command_name=body.command_name,
            action=body.action,
            invocation_kind=body.invocation_kind,
            metadata=metadata or None,
            started_at=body.started_at,
            # A remote process is not this machine's to check for liveness.
            owner_host=body.host or "remote",
            owner_pid=None,
        )
    except UsageError as exc:
        if exc.field == "parent_id":
            raise HTTPException(404, str(exc)) from None
        if exc.field == "id":
            raise HTTPException(409, str(exc)) from None
        raise
    return {"run": run_json(repo, run_id)}


def _same_kind(run_id: str, stored: str, posted: str) -> None:
    if stored != posted:
        raise HTTPException(409, f"id: run {run_id!r} exists with kind {stored!r}, not {posted!r}")


def _newest_with_key(repo: Repository, key: str) -> str | None:
    query = select(runs.c.id).where(runs.c.key == key).order_by(runs.c.started_at.desc()).limit(1)
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        found = conn.execute(query).scalar_one_or_none()
    return None if found is None else str(found)


def run_json(repo: Repository, run_id: str) -> dict[str, Any]:
    """The run as ``llmledger show --json`` prints it, without its children."""
    from llmledger.reports.run_tree import load_tree

    tree = load_tree(repo, run_id)
    if tree is None:  # pragma: no cover - callers ask for a run they found or made
        raise HTTPException(404, f"run_id: no run {run_id!r} in the ledger")
    node = tree.to_dict()
    node.pop("children", None)
    return RunJSON.model_validate(node).model_dump()


def _existing_run(repo: Repository, run_id: str) -> dict[str, Any]:
    row = repo.get_run(run_id)
    if row is None:
        raise HTTPException(404, f"run_id: no run {run_id!r} in the ledger")
    return row


@router.post(
    "/runs/{run_id}/finish",
    response_model=RunResult,
    summary="End a run: terminal status and usage roll-up in one transaction",
    responses=error_responses(404, 409),
)
def finish_run(run_id: str, body: RunFinish, repo: Repo) -> dict[str, Any]:
    """Write the run's terminal status and its inclusive roll-up, as ``Ledger`` does when a
    run ends. Posting the same status again recomputes the roll-up (calls that arrived late
    are counted) and keeps the finish time; another terminal status is a 409."""
    _existing_run(repo, run_id)
    repo.finalize_run(
        run_id,
        body.status,
        finished_at=body.finished_at,
        metadata=body.metadata,
        idempotent=True,
    )
    return {"run": run_json(repo, run_id)}


# -- calls -------------------------------------------------------------------------------


@router.post(
    "/calls",
    summary="Store a batch of calls (no run)",
    response_model=CallBatchResult,
)
def post_calls(request: Request, body: CallBatch, repo: Repo, prices: ServerPricer) -> Response:
    """Store up to 1000 calls, each ``{"call": <CallRecord>}`` or ``{"payload": ..., "format"?}``
    (parsed as ``Ledger.record`` parses it). A bad item is listed in ``rejected`` with its
    index and the field or line at fault; the others are stored. Every call is stored once
    under its dedupe key, however often the batch is sent."""
    return _json(_counted(request, ingest_calls(repo, prices, body, None)))


@router.post(
    "/runs/{run_id}/calls",
    summary="Store a batch of a run's calls",
    response_model=CallBatchResult,
    responses=error_responses(404),
)
def post_run_calls(
    request: Request, run_id: str, body: CallBatch, repo: Repo, prices: ServerPricer
) -> Response:
    """``POST /v1/calls`` with every call filed under the run ``run_id`` (404 when the ledger
    has no such run)."""
    _existing_run(repo, run_id)
    return _json(_counted(request, ingest_calls(repo, prices, body, run_id)))


def _counted(request: Request, document: dict[str, Any]) -> dict[str, Any]:
    """``document``, after counting its rejected items in ``llmledger_ingest_failures_total``."""
    if document["rejected"]:
        request.app.state.metrics.rejected(item["error"] for item in document["rejected"])
    return document


def _json(document: dict[str, Any]) -> Response:
    # orjson, and no second validation of a response built here: the batch's hot path.
    return Response(orjson.dumps(document), media_type=_JSON)


@dataclass(slots=True)
class _Batch:
    """The calls found in a batch so far, each with its item's index and its price."""

    indexes: list[int] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    prices: list[Price] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def add(self, index: int, call: Call, price: Price) -> None:
        self.indexes.append(index)
        self.calls.append(call)
        self.prices.append(price)


def ingest_calls(
    repo: Repository, pricer: Pricer, batch: CallBatch, run_id: str | None
) -> dict[str, Any]:
    """Check, price and store the calls of ``batch`` (under ``run_id``) in one transaction;
    the result document of ``POST /v1/calls``. Raises a 413 above :data:`MAX_BATCH_ITEMS`."""
    if len(batch.items) > MAX_BATCH_ITEMS:
        raise HTTPException(
            413, f"items: {len(batch.items)} items; a batch holds at most {MAX_BATCH_ITEMS}"
        )
    found = _Batch()
    records: list[tuple[int, Any]] = []
    for index, item in enumerate(batch.items):
        if "call" in item:
            if len(item) != 1:
                extra = sorted(name for name in item if name != "call")
                found.rejected.append((index, f"call: unexpected fields beside it: {extra}"))
            else:
                records.append((index, item["call"]))
        elif "payload" in item:
            _add_payload(found, index, item, pricer, batch.host, run_id)
        else:
            found.rejected.append((index, "an item is {'call': ...} or {'payload': ...}"))
    _add_records(found, records, pricer, batch.host)
    rows, row_indexes = _rows(repo, found, run_id)
    rows, row_indexes, copies = _without_telemetry_copies(repo, rows, row_indexes)
    # In key order: concurrent batches that share keys then lock them in the same order
    # (PostgreSQL), so they wait for each other instead of deadlocking.
    written = repo.write_call_rows(sorted(rows, key=_dedupe_key)) if rows else 0
    found.rejected.sort()
    return {
        "accepted": written,
        "duplicates": len(rows) - written + copies,
        "rejected": [{"index": index, "error": error} for index, error in found.rejected],
        "calls": [
            {
                "index": index,
                "dedupe_key": row["dedupe_key"],
                "model": row["model"],
                "cost_usd": None if row["cost_usd"] is None else float(row["cost_usd"]),
                "cost_status": row["cost_status"],
            }
            for index, row in sorted(zip(row_indexes, rows, strict=True), key=_by_index)
        ],
    }


_dedupe_key = itemgetter("dedupe_key")


def _without_telemetry_copies(
    repo: Repository, rows: list[dict[str, Any]], indexes: list[int]
) -> tuple[list[dict[str, Any]], list[int], int]:
    """The rows less the Claude Code transcript calls (``import --to``) of API requests that
    Claude Code's telemetry stored already through ``/v1/logs``: those count once, as the
    event's copy (the rule of a local import, :func:`~llmledger.imports.dedupe.telemetry_requests`).
    Returns the rows and indexes kept and how many were such copies."""
    sessions = {
        row["session_id"]
        for row in rows
        if row["source"] == CLAUDE.log_source and row["session_id"] and row["request_id"]
    }
    if not sessions:
        return rows, indexes, 0
    from llmledger.imports.dedupe import telemetry_requests

    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        sent = telemetry_requests(conn, sessions)
    if not sent:
        return rows, indexes, 0
    kept = [
        (row, index)
        for row, index in zip(rows, indexes, strict=True)
        if row["source"] != CLAUDE.log_source or (row["session_id"], row["request_id"]) not in sent
    ]
    return [row for row, _ in kept], [index for _, index in kept], len(rows) - len(kept)


def _by_index(pair: tuple[int, dict[str, Any]]) -> int:
    return pair[0]


def _add_records(
    found: _Batch, records: list[tuple[int, Any]], pricer: Pricer, host: str | None
) -> None:
    """The canonical records, validated in one go (one by one only when some are bad)."""
    valid: list[tuple[int, CallRecord]] = []
    try:
        checked = _RECORDS.validate_python([value for _, value in records])
        valid = [(index, record) for (index, _), record in zip(records, checked, strict=True)]
    except ValidationError:
        for index, value in records:
            try:
                valid.append((index, CallRecord.model_validate(value)))
            except ValidationError as exc:
                found.rejected.append((index, _described(exc, "call")))
    for index, record in valid:
        try:
            call = call_of_record(record)
        except UsageError as exc:
            found.rejected.append((index, f"call.usage.{exc}"))
            continue
        if call.host is None:
            call.host = host
        found.add(index, call, price_call(pricer, call))


def _add_payload(
    found: _Batch,
    index: int,
    item: dict[str, Any],
    pricer: Pricer,
    host: str | None,
    run_id: str | None,
) -> None:
    """The calls of one payload, read as ``Ledger.record`` reads it; a call its source gave
    no id gets a content hash, so that the same payload posted again is stored once."""
    try:
        payload = PayloadItem.model_validate(item)
    except ValidationError as exc:
        found.rejected.append((index, _described(exc)))
        return
    try:
        parsed = calls_in(payload.payload, payload.format)
    except Exception as exc:  # a parser's failure on odd input rejects this item only
        _log.debug("payload item %d rejected", index, exc_info=True)
        found.rejected.append((index, f"payload: {exc}"))
        return
    for skipped in parsed.skipped:
        found.rejected.append((index, f"payload: {skipped}"))
    calls: list[Call] = []
    for call in parsed.calls:
        call.dedupe_key = call.key()
        if call.host is None:
            call.host = host
        flags = missing_flags(call, has_run=run_id is not None)
        if flags:  # as Ledger.record marks them; after the key, which must not depend on it
            call.metadata = {**call.metadata, "flags": flags}
        calls.append(call)
    for call, price in zip(
        calls, price_calls(pricer, calls, parsed.reported_by_model), strict=True
    ):
        found.add(index, call, price)


def _rows(
    repo: Repository, found: _Batch, run_id: str | None
) -> tuple[list[dict[str, Any]], list[int]]:
    """The store's rows of the calls found, with each row's item index; a call the store
    would refuse (the field named) is rejected alone, on SQLite as on PostgreSQL, so that it
    cannot fail the batch's one transaction."""
    recorded_at = datetime.now(UTC)
    try:
        rows = repo.call_rows(
            found.calls, run_id=run_id, prices=found.prices, recorded_at=recorded_at
        )
        problems = [unstorable(row) for row in rows]
        if not any(problems):
            return rows, found.indexes
    except UsageError:
        pass
    rows, indexes = [], []
    for index, call, price in zip(found.indexes, found.calls, found.prices, strict=True):
        try:
            row = repo.call_rows([call], run_id=run_id, prices=[price], recorded_at=recorded_at)[0]
        except UsageError as exc:
            found.rejected.append((index, str(exc)))
            continue
        problem = unstorable(row)
        if problem:
            found.rejected.append((index, problem))
            continue
        rows.append(row)
        indexes.append(index)
    return rows, indexes


#: The calls table's text and integer columns, from its schema; each text column's limit (what
#: PostgreSQL enforces; None: unlimited).
_TEXT = [
    (column.name, getattr(column.type, "length", None))
    for column in calls.columns
    if isinstance(column.type, (String, Text))
]
_INTS = [
    column.name
    for column in calls.columns
    if isinstance(column.type, (Integer, BigInteger)) and not column.primary_key
]
_texts = itemgetter(*(name for name, _ in _TEXT))
_ints = itemgetter(*_INTS)
_INT64 = 2**63


def unstorable(row: dict[str, Any]) -> str | None:
    """Why the store cannot hold ``row`` (a column named), or None."""
    for (name, limit), value in zip(_TEXT, _texts(row), strict=True):
        if value is None:
            continue
        if limit is not None and len(value) > limit:
            return f"{name}: longer than the store's {limit} characters"
        if "\x00" in value:
            return f"{name}: contains a NUL character, which the store cannot hold"
    for name, value in zip(_INTS, _ints(row), strict=True):
        if value is not None and not -_INT64 <= value < _INT64:
            return f"{name}: {value} is out of the store's range"
    metadata = row["metadata"]
    problem = storable_problem(metadata) if metadata else None
    return f"metadata: {problem}" if problem else None


def _described(exc: ValidationError, prefix: str = "") -> str:
    """A validation error in one line: each field's dotted path and what is wrong with it."""
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        path = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        parts.append(f"{path}: {error['msg']}" if path else error["msg"])
    return "; ".join(parts)


# -- task status events ------------------------------------------------------------------


@router.post(
    "/tasks/{key:path}/status",
    status_code=201,
    response_model=StatusEventResult,
    response_model_exclude_none=True,
    summary="Add a task status event (idempotent by event id)",
    responses={
        200: {"model": StatusEventResult, "description": "The event was stored already"},
        **error_responses(404),
    },
)
def add_status_event(
    key: str, body: StatusEventCreate, response: Response, repo: Repo
) -> StatusEventResult:
    """A ``task_status_events`` row: the task ``key`` moved to ``to_status``. 201 when stored,
    200 when an event with this id was stored already. Without ``id`` the event id is the
    SHA-256 of the key and the body, so identical posts are one event. ``from_status``
    defaults to the task's last known status; a different one is stored with a ``warning``
    (the same code path as ``Ledger.task_status``: ``forecast.status.write_status``)."""
    event_id = body.id or _event_id(key, body)
    if body.run_id is not None:
        _existing_run(repo, body.run_id)
    written = write_status(
        repo,
        key,
        body.to_status,
        run_id=body.run_id,
        from_status=body.from_status,
        at=body.at,
        command_name=body.command_name,
        job=body.job,
        agent_id=body.agent_id,
        project=body.project,
        metadata=body.metadata,
        event_id=event_id,
    )
    if not written.stored:
        response.status_code = 200
    return StatusEventResult(event_id=event_id, created=written.stored, warning=written.warning)


def _event_id(key: str, body: StatusEventCreate) -> str:
    canonical = orjson.dumps(
        body.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(key.encode("utf-8", "surrogatepass") + b"\n" + canonical).hexdigest()
