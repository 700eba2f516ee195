"""What the OTLP receiver writes: GenAI spans as calls under a run tree, Claude Code's
``api_request`` events as calls with their reported cost. Each write is idempotent.

Spans (:func:`ingest_spans`):

- A span that is a model call (:func:`llmledger.sources.otel.span_call`: the rules of the
  OTel source, cache tokens subtracted from the inclusive input count) becomes a call, keyed
  by its ``gen_ai.response.id`` where it has one (the same request seen by two
  instrumentations is one call), else by ``trace id:span id``.
- Its parent span, that parent's parents, and every agent, workflow and tool span become
  runs: ``invoke_workflow`` → ``workflow``, ``invoke_agent``/``create_agent`` → ``agent``,
  ``execute_tool`` → ``tool``, any other span → ``section``. A run's id is derived from its
  trace and span ids (:func:`span_run_id`), so a span sent again changes nothing.
- Parents may come later than their children (an exporter sends a span when it ends, in
  batches). A call whose parent span is not known yet is filed under a **placeholder run**
  with the parent's id (kind ``section``, status ``running``, ``metadata.otel.placeholder``);
  when the parent span arrives, the placeholder takes its kind, name, times, status and its own
  parent, and the subtree moves under that parent's root. A non-GenAI span that arrives before
  any of its GenAI descendants, in another request, is not kept (the receiver cannot know it
  will be a parent), so its placeholder stays a running ``section``.
- A run whose span has ended is finalized (its status from the span's, its roll-up of calls);
  a later call under it recomputes the roll-ups of its ended ancestors.

Claude Code events (:func:`ingest_log_records`): each ``api_request`` record is a call of the
source ``claude_code_otel`` with the cost Claude Code reports, filed under the session's run
(the same run id that ``llmledger import`` gives the session, so both meet in one tree). The
same API request never counts twice: a call imported from the session's transcript with the
same request id is replaced by the event's (the reported cost wins), and a call that
``llmledger run`` recorded live keeps its place (the event is a duplicate); the importer, in
turn, skips transcript lines whose request id came by telemetry
(:mod:`llmledger.imports.dedupe`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from llmledger.agents import CLAUDE
from llmledger.api.ingest import unstorable
from llmledger.call import Call
from llmledger.errors import ParseError, UsageError
from llmledger.imports.rows import session_run_id
from llmledger.payloads import missing_flags, price_calls
from llmledger.pricing import Price, Pricer
from llmledger.sources import claude_code_otel, otel
from llmledger.sources._common import Ctx
from llmledger.store import Repository
from llmledger.store.schema import TERMINAL_RUN_STATUSES, TerminalRunStatus, calls, runs

__all__ = ["Outcome", "ingest_log_records", "ingest_spans", "span_run_id"]

#: The kind of a run made of a span that is neither an agent, a workflow nor a tool.
SECTION = "section"
_IN_CHUNK = 500
#: Namespace of the run ids derived from trace and span ids (fixed forever).
_SPAN_RUNS = uuid.UUID("1f3c2b8e-6a4d-4e0f-9b71-0c5d7e2a9f13")


@dataclass(slots=True)
class Outcome:
    """What one export request did: calls stored, calls that were stored already (or whose
    copy counts instead), and each rejected item with why."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)


def span_run_id(trace_id: str, span_id: str) -> str:
    """The id of the run made of a span (32 characters, derived: a resend finds it)."""
    return uuid.uuid5(_SPAN_RUNS, f"{trace_id}:{span_id}").hex


# -- spans ---------------------------------------------------------------------------------


_Key = tuple[str, str]


def ingest_spans(repo: Repository, pricer: Pricer, spans: Iterable[dict[str, Any]]) -> Outcome:
    """Store the model calls among ``spans`` (as :mod:`llmledger.sources.otlp` gives them)
    and the runs their parents make; see the module's rules."""
    outcome = Outcome()
    ctx = Ctx(otel.FORMAT)
    by_key: dict[_Key, dict[str, Any]] = {}
    found: list[tuple[dict[str, Any], Call]] = []
    for span in spans:
        key = (span["traceId"], span["spanId"])
        try:
            call = otel.span_call(span, span["attributes"], ctx)
        except ParseError as exc:
            outcome.rejected.append(f"span {span['spanId']} ({span['name']}): {exc.detail}")
            continue
        if call is None:
            by_key[key] = span
        else:
            found.append((span, call))
    tree = _Tree(repo, by_key, found)
    tree.write(ctx)
    if found:
        _write_calls(repo, pricer, tree, found, outcome)
    tree.finalize()
    return outcome


class _Tree:
    """The runs a request's spans make: which spans are runs, the placeholders their calls
    need, and the stored runs they meet."""

    def __init__(
        self,
        repo: Repository,
        spans: dict[_Key, dict[str, Any]],
        found: list[tuple[dict[str, Any], Call]],
    ) -> None:
        self.repo = repo
        self.spans = spans
        self.call_spans = {(span["traceId"], span["spanId"]): span for span, _ in found}
        # Every run id this request may touch: each non-call span's, and each parent's.
        wanted = {span_run_id(*key) for key in spans}
        for span in [*spans.values(), *self.call_spans.values()]:
            parent = self.parent_key(span)
            if parent is not None:
                wanted.add(span_run_id(*parent))
        self.stored = _stored_runs(repo, wanted)
        self.needed: set[_Key] = set()
        for span, _ in found:
            parent = self.parent_key(span)
            if parent is not None:
                self._need(parent)
        for key, span in spans.items():
            if (
                otel.operation(span["attributes"]) in otel.RUN_OPERATIONS
                or span_run_id(*key) in self.stored
            ):
                self._need(key)
        self.roots: dict[str, str] = {}
        self.ended: list[tuple[str, TerminalRunStatus, datetime | None]] = []
        self.touched: set[str] = set()

    def parent_key(self, span: Mapping[str, Any]) -> _Key | None:
        """The span's nearest ancestor that is not a call span of this request (a call
        wrapped by another instrumentation's call span belongs to the outer call's run)."""
        seen: set[str] = set()
        while span["parentSpanId"] and span["spanId"] not in seen:
            seen.add(span["spanId"])
            key = (span["traceId"], span["parentSpanId"])
            outer = self.call_spans.get(key)
            if outer is None:
                return key
            span = outer
        return None

    def _need(self, key: _Key) -> None:
        while key not in self.needed:
            self.needed.add(key)
            span = self.spans.get(key)
            parent = None if span is None else self.parent_key(span)
            if parent is None:
                return
            key = parent

    def run_of(self, span: Mapping[str, Any]) -> str | None:
        """The run a call span is filed under: its nearest non-call ancestor's (None for a
        root span)."""
        parent = self.parent_key(span)
        return None if parent is None else span_run_id(*parent)

    def agent_of(self, span: Mapping[str, Any]) -> str | None:
        """The agent a call span works for: its own ``gen_ai.agent.name``, else its nearest
        agent ancestor's in this request."""
        seen: set[str] = set()
        current: Mapping[str, Any] | None = span
        while current is not None and current["spanId"] not in seen:
            seen.add(current["spanId"])
            name = _agent_name(current["attributes"])
            if name is not None:
                return name
            parent = current["parentSpanId"]
            current = self.spans.get((current["traceId"], parent)) if parent else None
        return None

    def write(self, ctx: Ctx) -> None:
        """Create or complete the runs, parents first, in one transaction."""
        order = sorted(self.needed, key=self._depth)
        if not order:
            return
        with self.repo.engine.begin() as conn:
            for key in order:
                self._write_run(conn, key, ctx)

    def _depth(self, key: _Key) -> int:
        depth, seen = 0, set()
        span = self.spans.get(key)
        while span is not None and key not in seen:
            seen.add(key)
            parent = self.parent_key(span)
            if parent is None:
                break
            key, span = parent, self.spans.get(parent)
            depth += 1
        return depth

    def _root(self, conn: Connection, run_id: str, start: datetime | None) -> str:
        """The root of the run ``run_id`` (a parent's); a placeholder is made for an unknown
        parent."""
        if run_id in self.roots:
            return self.roots[run_id]
        stored = self.stored.get(run_id)
        if stored is not None:
            root = str(stored["root_id"])
        else:
            _insert(
                conn,
                {
                    "id": run_id,
                    "parent_id": None,
                    "root_id": run_id,
                    "kind": SECTION,
                    "status": "running",
                    "started_at": start or datetime.now(UTC),
                    "metadata": {"otel": {"placeholder": True}},
                },
            )
            self.stored[run_id] = {"root_id": run_id, "placeholder": True, "status": "running"}
            root = run_id
        self.roots[run_id] = root
        return root

    def _write_run(self, conn: Connection, key: _Key, ctx: Ctx) -> None:
        run_id = span_run_id(*key)
        span = self.spans.get(key)
        if span is None:
            # A parent this request does not hold: a stored run, or a placeholder for now.
            self._root(conn, run_id, self._first_start(key, ctx))
            return
        stored = self.stored.get(run_id)
        if stored is not None and not stored["placeholder"]:
            self.roots[run_id] = str(stored["root_id"])
            return  # sent before: nothing changes
        start, end = _times(span, ctx)
        parent = self.parent_key(span)
        parent_id = None if parent is None else span_run_id(*parent)
        root = self._root(conn, parent_id, start) if parent_id else run_id
        attrs = span["attributes"]
        op = otel.operation(attrs)
        values = {
            "parent_id": parent_id,
            "root_id": root,
            "kind": otel.RUN_OPERATIONS.get(op or "", SECTION),
            "name": _text(span["name"]),
            "agent_id": _agent_name(attrs),
            "started_at": start or datetime.now(UTC),
            "metadata": _run_metadata(span, op),
        }
        if stored is None:
            _insert(conn, {"id": run_id, "status": "running", **values})
        else:  # the placeholder completed; its subtree moves under the new root
            if values["agent_id"] is not None:
                # Calls sent before their agent span work for that agent (the placeholder
                # is still the root of its subtree here).
                subtree = select(runs.c.id).where(runs.c.root_id == run_id)
                conn.execute(
                    update(calls)
                    .where(
                        calls.c.run_id.in_(subtree),
                        calls.c.agent_id.is_(None),
                        calls.c.source == otel.FORMAT,
                    )
                    .values(agent_id=values["agent_id"])
                )
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
            if root != run_id:
                conn.execute(update(runs).where(runs.c.root_id == run_id).values(root_id=root))
        self.roots[run_id] = root
        self.stored[run_id] = {"root_id": root, "placeholder": False, "status": "running"}
        status: TerminalRunStatus = "failed" if span["status"].get("code") == 2 else "succeeded"
        if end is not None and (start is None or end >= start):
            self.ended.append((run_id, status, end))

    def _first_start(self, parent: _Key, ctx: Ctx) -> datetime | None:
        starts = [
            _times(span, ctx)[0]
            for span in [*self.spans.values(), *self.call_spans.values()]
            if self.parent_key(span) == parent
        ]
        known = [start for start in starts if start is not None]
        return min(known) if known else None

    def finalize(self) -> None:
        """End the runs whose spans ended here; recompute the roll-ups of ended runs above
        the calls written."""
        done = {run_id for run_id, _, _ in self.ended}
        above = _ended_ancestors(self.repo, self.touched | done)
        self.repo.finalize_runs(
            [
                *self.ended,
                *((run_id, status, None) for run_id, status in above.items() if run_id not in done),
            ],
            idempotent=True,
        )


def _times(span: Mapping[str, Any], ctx: Ctx) -> tuple[datetime | None, datetime | None]:
    try:
        return otel.span_times(span, ctx)
    except ParseError:  # a run keeps what it can: times out of range are unknown
        return None, None


def _text(value: object, limit: int | None = None) -> str | None:
    """A span's text as a run column holds it: PostgreSQL stores no NUL character."""
    if not isinstance(value, str) or not value:
        return None
    return value.replace("\x00", "")[:limit]


def _agent_name(attrs: Mapping[str, Any]) -> str | None:
    for key in ("gen_ai.agent.name", "gen_ai.agent.id"):
        value = _text(attrs.get(key), 128)
        if value:
            return value
    return None


def _run_metadata(span: Mapping[str, Any], op: str | None) -> dict[str, Any]:
    otel_meta: dict[str, Any] = {"trace_id": span["traceId"], "span_id": span["spanId"]}
    if op:
        otel_meta["operation"] = _text(op)
    meta: dict[str, Any] = {"otel": otel_meta}
    service = _text(span["resource"].get("service.name"))
    if service:
        meta["service"] = service
    return meta


def _insert(conn: Connection, row: dict[str, Any]) -> None:
    insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(runs)
    conn.execute(insert.on_conflict_do_nothing(), [row])


def _stored_runs(repo: Repository, wanted: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    ids = sorted(wanted)
    with repo.engine.connect() as conn:
        for i in range(0, len(ids), _IN_CHUNK):
            query = select(runs.c.id, runs.c.root_id, runs.c.status, runs.c.metadata).where(
                runs.c.id.in_(ids[i : i + _IN_CHUNK])
            )
            for run_id, root, status, meta in conn.execute(query).all():
                otel_meta = (meta or {}).get("otel") or {}
                found[run_id] = {
                    "root_id": root,
                    "status": status,
                    "placeholder": otel_meta.get("placeholder") is True,
                }
    return found


def _ended_ancestors(repo: Repository, run_ids: set[str]) -> dict[str, TerminalRunStatus]:
    """The ended runs among ``run_ids`` and their ancestors, with their status."""
    ended: dict[str, TerminalRunStatus] = {}
    seen: set[str] = set()
    frontier = sorted(run_ids)
    with repo.engine.connect() as conn:
        while frontier:
            seen.update(frontier)
            parents: set[str] = set()
            for i in range(0, len(frontier), _IN_CHUNK):
                query = select(runs.c.id, runs.c.parent_id, runs.c.status).where(
                    runs.c.id.in_(frontier[i : i + _IN_CHUNK])
                )
                for run_id, parent, status in conn.execute(query).all():
                    if status in TERMINAL_RUN_STATUSES:
                        ended[run_id] = cast("TerminalRunStatus", status)
                    if parent is not None and parent not in seen:
                        parents.add(parent)
            frontier = sorted(parents)
    return ended


def _write_calls(
    repo: Repository,
    pricer: Pricer,
    tree: _Tree,
    found: list[tuple[dict[str, Any], Call]],
    outcome: Outcome,
) -> None:
    run_ids: list[str | None] = []
    for span, call in found:
        run_id = tree.run_of(span)
        run_ids.append(run_id)
        if call.agent_id is None:
            call.agent_id = tree.agent_of(span)
        if call.host is None:
            host = span["resource"].get("host.name")
            call.host = host if isinstance(host, str) else None
    labels = [f"span {span['spanId']} ({span['name']})" for span, _ in found]
    written = _store(repo, pricer, [call for _, call in found], run_ids, labels, outcome)
    tree.touched.update(run_id for run_id in written if run_id is not None)


def _store(
    repo: Repository,
    pricer: Pricer,
    items: list[Call],
    run_ids: list[str | None],
    labels: list[str],
    outcome: Outcome,
) -> list[str | None]:
    """Price and store calls, each under its run; a call the store would refuse is rejected
    alone. Returns the runs of the calls written."""
    for call, run_id in zip(items, run_ids, strict=True):
        call.dedupe_key = call.key()
        flags = missing_flags(call, has_run=run_id is not None)
        if flags:
            call.metadata = {**call.metadata, "flags": flags}
    prices = price_calls(pricer, items, {})
    recorded_at = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    runs_of: list[str | None] = []
    for call, price, run_id, label in zip(items, prices, run_ids, labels, strict=True):
        row = _row(repo, call, price, run_id, recorded_at)
        problem = row if isinstance(row, str) else unstorable(row)
        if problem is not None:
            outcome.rejected.append(f"{label}: {problem}")
            continue
        assert not isinstance(row, str)
        rows.append(row)
        runs_of.append(run_id)
    written = repo.write_call_rows(sorted(rows, key=_dedupe_key)) if rows else 0
    outcome.accepted += written
    outcome.duplicates += len(rows) - written
    return runs_of


def _row(
    repo: Repository, call: Call, price: Price, run_id: str | None, recorded_at: datetime
) -> dict[str, Any] | str:
    try:
        return repo.call_rows([call], run_id=run_id, prices=[price], recorded_at=recorded_at)[0]
    except UsageError as exc:
        return str(exc)


def _dedupe_key(row: Mapping[str, Any]) -> str:
    return str(row["dedupe_key"])


# -- Claude Code's log events --------------------------------------------------------------


def ingest_log_records(
    repo: Repository, pricer: Pricer, records: Iterable[dict[str, Any]]
) -> Outcome:
    """Store Claude Code's ``api_request`` events among ``records`` as calls (other records
    are not calls and are let through); see the module's rules."""
    outcome = Outcome()
    ctx = Ctx(claude_code_otel.SOURCE)
    found: list[Call] = []
    for index, record in enumerate(records):
        if not claude_code_otel.is_api_request(record):
            continue
        try:
            found.append(claude_code_otel.api_request_call(record, ctx))
        except ParseError as exc:
            outcome.rejected.append(f"log record {index} (api_request): {exc.detail}")
    if not found:
        return outcome
    found = _settle_copies(repo, found, outcome)
    sessions: dict[str, datetime | None] = {}
    for call in found:
        if call.session_id is not None:
            first = sessions.get(call.session_id)
            at = call.started_at
            if call.session_id not in sessions or (at and (first is None or at < first)):
                sessions[call.session_id] = at
    for session, started in sessions.items():
        _session_run(repo, session, started, outcome)
    run_ids = [
        session_run_id(call.session_id) if call.session_id in sessions else None for call in found
    ]
    labels = [f"api_request {call.request_id or call.dedupe_key}" for call in found]
    _store(repo, pricer, found, run_ids, labels, outcome)
    return outcome


def _session_run(
    repo: Repository, session: str, started: datetime | None, outcome: Outcome
) -> None:
    try:
        repo.create_run(
            "session",
            run_id=session_run_id(session),
            key=session,
            agent_id=CLAUDE.agent_id,
            invocation_kind="otlp",
            started_at=started,
            owner_host=None,
            owner_pid=None,
        )
    except UsageError as exc:  # a run of another kind holds the id: leave the calls loose
        outcome.rejected.append(f"session {session}: {exc}")


def _settle_copies(repo: Repository, found: list[Call], outcome: Outcome) -> list[Call]:
    """The events to store: each Claude Code API request once. A stored transcript call of
    the same session and request id is deleted (the event's reported cost wins); a call that
    ``llmledger run`` recorded live stays, and the event is a duplicate."""
    wanted = {(c.session_id, c.request_id) for c in found if c.session_id and c.request_id}
    if not wanted:
        return found
    sessions = sorted({s for s, _ in wanted if "\x00" not in s})
    requests = {r for _, r in wanted}
    imported: list[str] = []
    live: set[tuple[str, str]] = set()
    with repo.engine.connect() as conn:
        for i in range(0, len(sessions), _IN_CHUNK):
            query = select(
                calls.c.dedupe_key, calls.c.source, calls.c.session_id, calls.c.request_id
            ).where(
                calls.c.session_id.in_(sessions[i : i + _IN_CHUNK]),
                calls.c.source.in_(CLAUDE.sources),
                calls.c.request_id.is_not(None),
            )
            for key, source, session, request in conn.execute(query).all():
                if (session, request) not in wanted or request not in requests:
                    continue
                if source == CLAUDE.log_source:
                    imported.append(key)
                else:
                    live.add((session, request))
    if imported:
        with repo.engine.begin() as conn:
            for i in range(0, len(imported), _IN_CHUNK):
                conn.execute(
                    delete(calls).where(calls.c.dedupe_key.in_(imported[i : i + _IN_CHUNK]))
                )
    kept = [c for c in found if (c.session_id, c.request_id) not in live]
    outcome.duplicates += len(found) - len(kept)
    return kept
