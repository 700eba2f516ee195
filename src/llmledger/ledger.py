"""The collector: ``Ledger``, context-scoped runs, and ``record()``.

A run is opened with ``with ledger.run("task", key="1.1") as run:``; it nests under the run
that is current in this context (``contextvars``: asyncio tasks and threads started with a
copied context see it). ``ledger.record(...)`` files a call under the innermost run. Leaving the
block writes the run's terminal status and its usage roll-up in one transaction: succeeded,
failed (an exception), timed_out (``TimeoutError``), cancelled (``CancelledError``,
``KeyboardInterrupt``). The exception is re-raised untouched.

Recording never breaks the caller: a bad payload or an unreachable store is logged with its
cause, counted in ``ledger.failures``, reported to observers, and ``record()`` returns.

A ledger whose URL is ``http(s)://`` writes to an llmledger service instead: every write is
appended to a local spool and a background thread sends it (:mod:`llmledger.remote`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

from sqlalchemy import select

from llmledger.budgets.current import current_reservation
from llmledger.call import Call, CallStatus
from llmledger.errors import UsageError
from llmledger.payloads import calls_in, missing_flags, price_calls
from llmledger.pricing import Price, Pricer
from llmledger.store import Repository, open_repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import RunStatus, TerminalRunStatus, runs
from llmledger.totals import Totals
from llmledger.usage import BUCKETS, Usage
from llmledger.values import EARLIEST, LATEST, MAX_USD

if TYPE_CHECKING:
    from pathlib import Path

    from llmledger.budgets.current import Reservation
    from llmledger.forecast.status import StatusWrite
    from llmledger.remote import RemoteWriter
    from llmledger.remote.spool import Op

__all__ = [
    "Ledger",
    "LedgerObserver",
    "Run",
    "RunStatus",
    "TerminalRunStatus",
    "current_run",
    "repair_stale_runs",
    "status_for_exception",
]

_log = logging.getLogger("llmledger")
_P = ParamSpec("_P")
_T = TypeVar("_T")
_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "llmledger_current_run", default=None
)


def current_run() -> Run | None:
    """The innermost open run in this context, if any."""
    return _current.get()


def status_for_exception(exc: BaseException | None) -> TerminalRunStatus:
    """The terminal status for a run that ended with ``exc`` (None: it succeeded)."""
    if exc is None:
        return "succeeded"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, subprocess.TimeoutExpired)):
        return "timed_out"
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return "cancelled"
    if isinstance(exc, SystemExit):
        return "succeeded" if exc.code in (None, 0) else "failed"
    if isinstance(exc, Exception):
        return "failed"
    return "cancelled"  # GeneratorExit and other BaseExceptions end the work from outside


class LedgerObserver(Protocol):
    """Told about what the ledger records; the metrics exporters implement this.

    Observers must not raise; if one does, the error is logged and counted like any other.

    An observer may also define ``on_run_start(self, run: Run) -> None``: it is then told
    when a run opens (the OpenTelemetry exporter starts the run's span there). It is optional,
    looked up with ``getattr``, so observers written before it existed keep working.

    An observer may also define ``on_record_duration(seconds: float)``: it is then told how
    long each :meth:`Ledger.record` took (``llmledger.metrics.PrometheusObserver`` does).
    """

    def on_record(self, call: Call, price: Price, run: Run | None) -> None: ...

    def on_finalize(self, run: Run, status: TerminalRunStatus, totals: Totals | None) -> None: ...

    def on_failure(self, error: BaseException, what: str) -> None: ...


@dataclass(eq=False)
class Run:
    """An open run: a node of the run tree (session, plan, section, task, attempt, ...).

    Created by :meth:`Ledger.run`; record calls with :meth:`record`, start a retry with
    :meth:`attempt`, and set a terminal status other than the automatic one with
    :meth:`set_status`.
    """

    ledger: Ledger
    id: str
    kind: str
    name: str | None = None
    key: str | None = None
    parent: Run | None = None
    agent: str | None = None
    attempt_number: int | None = None
    status: RunStatus = "running"
    _forced_status: TerminalRunStatus | None = field(default=None, repr=False)
    _metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    _attempts: int = field(default=0, repr=False)
    _token: contextvars.Token[Run | None] | None = field(default=None, repr=False)

    def record(self, payload: Any, **kwargs: Any) -> list[Call]:
        """Record a call under this run (see :meth:`Ledger.record`)."""
        return self.ledger.record(payload, run=self, **kwargs)

    def attempt(self, **kwargs: Any) -> _RunScope:
        """Open the next attempt of this run (1, 2, 3, ...) as a child run of kind
        ``attempt``; each attempt keeps its own calls, so retries never overwrite usage."""
        self._attempts += 1
        name = kwargs.pop("name", None) or f"{self.name or self.kind} attempt {self._attempts}"
        return self.ledger.run("attempt", name=name, parent=self, attempt=self._attempts, **kwargs)

    def annotate(self, **metadata: Any) -> None:
        """Add to the run's metadata; written with its terminal status when the run ends."""
        self._metadata.update(metadata)

    def set_status(self, status: TerminalRunStatus) -> None:
        """Use ``status`` instead of the automatic one when the run ends (e.g. "skipped")."""
        self._forced_status = status

    def totals(self, *, inclusive: bool = True) -> Totals:
        """Usage and cost so far: of the whole subtree (default) or the run's own calls."""
        return self.ledger.totals(self.id, inclusive=inclusive)


class _RunScope:
    """Context manager (sync and async) that opens a run and finalizes it on exit."""

    def __init__(self, ledger: Ledger, kind: str, kwargs: dict[str, Any]) -> None:
        self._ledger = ledger
        self._kind = kind
        self._kwargs = kwargs
        self._run: Run | None = None

    def __enter__(self) -> Run:
        self._run = self._ledger._open_run(self._kind, **self._kwargs)
        self._run._token = _current.set(self._run)
        return self._run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        run = self._run
        assert run is not None
        if run._token is not None:
            # Exited in another context than it was entered in: nothing to restore there.
            with contextlib.suppress(ValueError):
                _current.reset(run._token)
            run._token = None
        self._ledger._finalize(run, run._forced_status or status_for_exception(exc))
        return False  # never swallow: the exception propagates untouched

    async def __aenter__(self) -> Run:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)


class Ledger:
    """The books: open runs, record calls, read totals.

    ``url`` is the database (default: ``LLMLEDGER_DB``, else the SQLite file in the user data
    directory). With ``durable=True`` (default) every ``record()`` commits before it returns,
    so a recorded call survives a crash of this process. ``durable=False`` keeps calls in
    memory until a run ends, :meth:`flush` or :meth:`close` — faster, and a crash loses them.

    The store is opened on first use; if it cannot be, the error is logged and counted and the
    ledger keeps accepting calls (they are lost, and ``failures`` says so).

    An ``http://`` or ``https://`` URL (or ``LLMLEDGER_DB``) names an llmledger service
    (``llmledger serve``): the same API, over HTTP. Each write (a run opened or finished, a
    call, a status event) is appended to a local spool file (``spool``; default: one per URL
    in the user cache directory) before the method returns, and a background thread sends the
    spool in batches of up to ``batch_size`` calls, at least every ``flush_interval`` seconds.
    A killed process loses nothing: the next process using the spool sends what is left, and
    the server stores each write once. ``api_key`` defaults to ``LLMLEDGER_API_KEY``.
    :meth:`flush`, :meth:`close` and interpreter exit wait (at most ``close_timeout``
    seconds) for the spool to drain. Writes the server refuses for good are kept in the spool's
    dead letters and counted in ``failures``. ``durable`` does not apply: the spool always is.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        durable: bool = True,
        pricer: Pricer | None = None,
        observers: Sequence[LedgerObserver] = (),
        repair_stale: bool = True,
        api_key: str | None = None,
        spool: str | Path | None = None,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        close_timeout: float = 10.0,
        _transport: Any = None,
    ) -> None:
        self.url = url
        self.durable = durable
        self.pricer = pricer or Pricer()
        self.observers: list[LedgerObserver] = list(observers)
        self.failures = 0
        self._repair_stale = repair_stale
        self._repo: Repository | None = None
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._remote: RemoteWriter | None = None
        target = url or os.environ.get("LLMLEDGER_DB")
        if target is not None and target.lower().startswith(("http://", "https://")):
            from llmledger.remote import RemoteWriter

            self.url = target
            self._remote = RemoteWriter(
                target,
                api_key=api_key,
                spool=spool,
                batch_size=batch_size,
                flush_interval=flush_interval,
                close_timeout=close_timeout,
                on_dead=_dead_letter_handler(self),
                transport=_transport,  # tests: an httpx.MockTransport instead of the network
            )

    @property
    def remote(self) -> RemoteWriter | None:
        """The writer to the service when this ledger is remote (``http(s)://``), else None."""
        return self._remote

    # -- store ---------------------------------------------------------------------------

    @property
    def repository(self) -> Repository:
        """The store, opened (and migrated) on first use; raises if it cannot be opened (and
        for a remote ledger, which has no store of its own)."""
        if self._remote is not None:
            raise UsageError(
                "url",
                f"the ledger {self.url} is a remote service: it has no local store "
                "(read it through the service's API)",
            )
        if self._repo is None:
            with self._lock:
                if self._repo is None:
                    repo = open_repository(self.url)
                    if self._repair_stale:
                        repair_stale_runs(repo)
                    self._repo = repo
        return self._repo

    def close(self, timeout: float | None = None) -> None:
        """Write buffered calls and release database connections. A remote ledger waits (at
        most ``timeout`` seconds, default ``close_timeout``) for its spool to drain and stops
        sending; what is left stays in the spool for the next process or ``llmledger spool
        flush``."""
        if self._remote is not None:
            self._guard("drain the spool", self._remote.close, timeout)
            return
        self.flush()
        if self._repo is not None:
            self._repo.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Write calls buffered by a non-durable ledger. A remote ledger waits (at most
        ``timeout`` seconds, default ``close_timeout``) until every write made so far has
        reached the service. Returns False when something is still unwritten."""
        if self._remote is not None:
            drained = self._guard("drain the spool", self._remote.flush, timeout)
            return bool(drained)
        with self._lock:
            rows, self._buffer = self._buffer, []
        if rows:
            return self._guard("flush", lambda: self.repository.write_call_rows(rows)) is not None
        return True

    # -- runs ----------------------------------------------------------------------------

    def run(
        self,
        kind: str,
        name: str | None = None,
        *,
        key: str | None = None,
        agent: str | None = None,
        parent: Run | None = None,
        attempt: int | None = None,
        agent_ids: Sequence[str] | None = None,
        command_name: str | None = None,
        action: str | None = None,
        invocation_kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> _RunScope:
        """A context manager (``with`` or ``async with``) that opens a run of ``kind``.

        The run nests under ``parent``, else under the current run of this context. ``key`` is
        your own id for it (a task id, a job id); ``agent`` names the agent doing the work and
        is inherited by child runs and calls that name none.
        """
        return _RunScope(
            self,
            kind,
            {
                "name": name,
                "key": key,
                "agent": agent,
                "parent": parent,
                "attempt": attempt,
                "agent_ids": agent_ids,
                "command_name": command_name,
                "action": action,
                "invocation_kind": invocation_kind,
                "metadata": metadata,
            },
        )

    @asynccontextmanager
    async def arun(
        self, kind: str, name: str | None = None, *, timeout: float | None = None, **kwargs: Any
    ) -> AsyncIterator[Run]:
        """``async with ledger.arun(...)``: :meth:`run` with the store writes done off the
        event loop's thread.

        ``timeout`` (seconds) bounds the block and ends the run ``timed_out``.
        A run *inside* ``asyncio.wait_for`` only sees the cancellation that the timeout causes
        and ends ``cancelled``; give the timeout to the run, or put it inside the run's block.
        """
        scope = self.run(kind, name, **kwargs)
        # to_thread copies the context, so the current run is seen as the parent.
        run = await asyncio.to_thread(self._open_run, kind, **scope._kwargs)
        token = _current.set(run)
        status: TerminalRunStatus = "succeeded"
        try:
            if timeout is None:
                yield run
            else:
                async with asyncio.timeout(timeout):
                    yield run
        except BaseException as exc:
            status = status_for_exception(exc)
            raise
        finally:
            _current.reset(token)
            await asyncio.to_thread(self._finalize, run, run._forced_status or status)

    def _open_run(
        self,
        kind: str,
        *,
        name: str | None,
        key: str | None,
        agent: str | None,
        parent: Run | None,
        attempt: int | None,
        agent_ids: Sequence[str] | None,
        command_name: str | None,
        action: str | None,
        invocation_kind: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Run:
        parent = parent if parent is not None else _current.get()
        if parent is not None and parent.ledger is not self:
            parent = None  # a run of another ledger cannot be a parent here
        agent = agent or (parent.agent if parent is not None else None)
        run = Run(
            ledger=self,
            id=uuid.uuid4().hex,
            kind=kind,
            name=name,
            key=key,
            parent=parent,
            agent=agent,
            attempt_number=attempt,
        )
        if self._remote is not None:
            remote = self._remote
            body = {
                "id": run.id,
                "kind": kind,
                "name": name,
                "key": key,
                "parent_id": parent.id if parent is not None else None,
                "attempt": attempt,
                "agent_id": agent,
                "agent_ids": list(agent_ids) if agent_ids is not None else None,
                "command_name": command_name,
                "action": action,
                "invocation_kind": invocation_kind,
                "metadata": dict(metadata) if metadata else None,
                "started_at": datetime.now(UTC).isoformat(),
            }
            body = {name: value for name, value in body.items() if value is not None}
            self._guard(f"open {kind} run", remote.create_run, body)
            self._run_started(run)
            return run
        self._guard(
            f"open {kind} run",
            lambda: self.repository.create_run(
                kind,
                run_id=run.id,
                name=name,
                key=key,
                parent_id=parent.id if parent is not None else None,
                attempt=attempt,
                agent_id=agent,
                agent_ids=agent_ids,
                command_name=command_name,
                action=action,
                invocation_kind=invocation_kind,
                metadata=metadata,
            ),
        )
        self._run_started(run)
        return run

    def _run_started(self, run: Run) -> None:
        """Tell the observers that have ``on_run_start`` (optional) that ``run`` opened."""
        for observer in self.observers:
            hook = getattr(observer, "on_run_start", None)
            if hook is not None:
                self._guard("observer", hook, run)

    def _finalize(self, run: Run, status: TerminalRunStatus) -> None:
        if self._remote is not None:
            # The roll-up is the server's to compute; observers get no totals here.
            body: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC).isoformat()}
            if run._metadata:
                body["metadata"] = run._metadata
            self._guard(f"finalize {run.kind} run {run.id}", self._remote.finish_run, run.id, body)
            run.status = status
            for observer in self.observers:
                self._guard("observer", observer.on_finalize, run, status, None)
            return
        self.flush()
        totals = self._guard(
            f"finalize {run.kind} run {run.id}",
            lambda: self.repository.finalize_run(run.id, status, metadata=run._metadata or None),
        )
        run.status = status
        for observer in self.observers:
            self._guard("observer", observer.on_finalize, run, status, totals)

    # -- calls ---------------------------------------------------------------------------

    def record(
        self,
        payload: Any,
        *,
        model: str | None = None,
        provider: str | None = None,
        run: Run | None = None,
        format: str | None = None,
        dedupe_key: str | None = None,
        agent: str | None = None,
        status: CallStatus | None = None,
        started_at: datetime | str | None = None,
        duration_ms: float | None = None,
        cost_usd: Decimal | float | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Call]:
        """Record the call(s) in ``payload`` under ``run`` (default: the current run).

        ``payload`` is a :class:`Usage`, a :class:`Call`, a :class:`~llmledger.sources.Parsed`
        (already parsed), or anything a parser of
        :mod:`llmledger.sources` understands (a provider response as dict or JSON text, an SDK
        response object with ``model_dump()``, Claude Code or Codex output, ...). ``model``
        fills in for calls whose payload names none; ``provider``, ``agent``, ``status``,
        ``started_at`` and ``duration_ms`` override what the payload says (the caller measured
        them, or knows which endpoint served the call). ``cost_usd`` is a cost the caller knows
        was billed (status reported): a Decimal, int, float or numeric string, converted exactly
        (a float through its ``str``, so ``0.0123`` is stored as 0.0123). ``started_at`` is a
        datetime or an ISO 8601 string; a naive one is UTC. ``duration_ms`` is a number of
        milliseconds (a fraction is rounded).

        Returns the calls recorded — an empty list when recording failed; it never raises.
        A call without a run, model or usage is still stored, flagged in its metadata. So is
        a call given a value that cannot be converted (a cost of "twelve cents", a negative
        duration): the value is dropped (a dropped cost leaves the call unpriced, never
        guessed), ``metadata["flags"]`` holds ``bad_<field>``, ``metadata["invalid"]`` the
        reason, and the error is logged, counted and reported like any other failure.
        """
        target = run if run is not None else _current.get()
        started = time.perf_counter()
        result = self._guard(
            "record",
            lambda: self._record(
                payload,
                target,
                model=model,
                provider=provider,
                format=format,
                dedupe_key=dedupe_key,
                agent=agent,
                status=status,
                started_at=started_at,
                duration_ms=duration_ms,
                cost_usd=cost_usd,
                metadata=metadata,
            ),
        )
        if self.observers:
            self._timed(time.perf_counter() - started)
        return result or []

    def _timed(self, seconds: float) -> None:
        """Tell the observers that want it how long a ``record()`` took."""
        for observer in self.observers:
            timed = getattr(observer, "on_record_duration", None)
            if timed is not None:
                self._guard("observer", timed, seconds)

    def _record(
        self,
        payload: Any,
        run: Run | None,
        *,
        model: str | None,
        provider: str | None,
        format: str | None,
        dedupe_key: str | None,
        agent: str | None,
        status: CallStatus | None,
        started_at: datetime | str | None,
        duration_ms: float | None,
        cost_usd: Decimal | float | str | None,
        metadata: Mapping[str, Any] | None,
    ) -> list[Call]:
        found = calls_in(payload, format)
        calls, reported_by_model = found.calls, found.reported_by_model
        for error in found.skipped:  # the rest of the payload is still recorded
            self._failed("record", error)
        # What cannot be converted is dropped (the call is still stored) and named.
        invalid: dict[str, str] = {}
        started: datetime | None = _checked("started_at", started_at, _instant, invalid)
        duration: int | None = _checked("duration_ms", duration_ms, _milliseconds, invalid)
        cost: Decimal | None = _checked("cost_usd", cost_usd, _money, invalid)
        run_agent = run.agent if run is not None else None
        prepared: list[Call] = []
        for index, call in enumerate(calls):
            # What the caller states wins (it measured the time, it knows which endpoint served
            # the call); only the model is a fill-in, since one payload may hold several models.
            call = replace(
                call,
                model=call.model or model,
                provider=provider or call.provider,
                agent_id=agent or call.agent_id or run_agent,
                status=status or call.status,
                started_at=started or call.started_at,
                duration_ms=duration if duration is not None else call.duration_ms,
                reported_cost_usd=cost if cost is not None else call.reported_cost_usd,
                metadata={**call.metadata, **(metadata or {})},
            )
            call = _converted(call, invalid)
            key = call.dedupe_key or (
                f"{dedupe_key}#{index}" if dedupe_key and len(calls) > 1 else dedupe_key
            )
            # A call the source gave no id for is a distinct event each time it is recorded.
            call.dedupe_key = key or f"rec:{uuid.uuid4().hex}"
            flags = missing_flags(call, has_run=run is not None)
            flags += [f"bad_{name}" for name in invalid]
            if flags:
                call.metadata["flags"] = flags
            if invalid:
                call.metadata["invalid"] = dict(invalid)
            prepared.append(call)
        for name, reason in invalid.items():
            self._failed("record", UsageError(name, f"{reason}; the call is stored without it"))
        if self._remote is not None:
            self._send_calls(prepared, run, reported_by_model)
            return prepared
        prices = price_calls(self.pricer, prepared, reported_by_model)
        repo_rows = self.repository.call_rows(
            prepared, run_id=run.id if run is not None else None, prices=prices
        )
        reservation = current_reservation()
        if reservation is not None:
            # The call and the end of its reservation in one transaction (llmledger.budgets).
            from llmledger.budgets.reserve import settle

            self.repository.write_call_rows(repo_rows, also=lambda conn: settle(conn, reservation))
        elif self.durable:
            self.repository.write_call_rows(repo_rows)
        else:
            with self._lock:
                self._buffer.extend(repo_rows)
        for call, price in zip(prepared, prices, strict=True):
            for observer in self.observers:
                self._guard("observer", observer.on_record, call, price, run)
        from llmledger.budgets.alerts import after_record

        self._guard("check the budgets", after_record, self, prepared, run)
        return prepared

    def _send_calls(
        self, calls: list[Call], run: Run | None, reported_by_model: Mapping[str, Decimal]
    ) -> None:
        """Append the calls to the spool. The server prices them; a cost the payload's
        summary reported per model is split here (as a local ledger does) and sent as each
        call's reported cost. Priced locally too only when observers want the price."""
        from llmledger.records import record_of_call

        assert self._remote is not None
        prices: list[Price] | None = None
        if reported_by_model or self.observers:
            prices = price_calls(self.pricer, calls, reported_by_model)
        records = []
        for index, call in enumerate(calls):
            record = record_of_call(call)
            if reported_by_model and prices is not None and call.reported_cost_usd is None:
                price = prices[index]
                if price.cost_status == "reported" and price.cost_usd is not None:
                    record["reported_cost_usd"] = str(price.cost_usd)
            records.append(record)
        self._remote.add_calls(run.id if run is not None else None, records)
        if prices is not None:
            for call, price in zip(calls, prices, strict=True):
                for observer in self.observers:
                    self._guard("observer", observer.on_record, call, price, run)

    # -- budgets -------------------------------------------------------------------------

    def reserve(
        self,
        estimate_usd: Decimal | float | str | None = None,
        *,
        model: str | None = None,
        prompt: str | None = None,
        max_output_tokens: int | None = None,
        provider: str | None = None,
        expires_in: float | None = None,
    ) -> contextlib.AbstractContextManager[Reservation]:
        """``with ledger.reserve(...):`` hold a call's worst case against every ``block``
        budget whose scope matches the current run, before the call is made.

        The worst case is ``estimate_usd``, else the estimate of ``prompt`` plus
        ``max_output_tokens`` at ``model``'s output rate (:mod:`llmledger.estimate`). Raises
        :class:`~llmledger.errors.BudgetExceeded` when a budget would go over. The next call
        recorded in the block (same thread or asyncio task) settles the reservation at its
        real cost; leaving the block without recording gives it back. A reservation left by a
        crashed process expires after ``expires_in`` seconds (default 600). If the store
        cannot be read, the failure is logged and counted and the call goes ahead unguarded.
        See docs/budgets.md.
        """
        if self._remote is not None:
            raise UsageError(
                "url", f"the ledger {self.url} is remote: budgets are enforced on a local store"
            )
        from llmledger.budgets.guard import reservation, worst_case

        amount = worst_case(
            estimate_usd,
            model=model,
            prompt=prompt,
            max_output_tokens=max_output_tokens,
            provider=provider,
            pricer=self.pricer,
        )
        return reservation(
            self, _current.get(), amount, model=model, provider=provider, expires_in=expires_in
        )

    # -- task status events --------------------------------------------------------------

    def add_status_event(
        self,
        to_status: str,
        *,
        run: Run | None = None,
        task_key: str | None = None,
        from_status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a task status event (``task_status_events``) for ``run`` (its key and agent) or
        for ``task_key``. Like :meth:`record`, it never raises: a store failure is logged,
        counted and reported."""
        if self._remote is not None:
            key = task_key or (run.key if run is not None else None)
            if key is None:
                self._failed(
                    "add a status event",
                    UsageError("task_key", "a remote ledger needs the task's key (task_key=)"),
                )
                return
            body = {
                "id": uuid.uuid4().hex,
                "to_status": to_status,
                "from_status": from_status,
                "at": datetime.now(UTC).isoformat(),
                "agent_id": run.agent if run is not None else None,
                "run_id": run.id if run is not None else None,
                "metadata": dict(metadata) if metadata else None,
            }
            body = {name: value for name, value in body.items() if value is not None}
            self._guard("add a status event", self._remote.status_event, key, body)
            return
        self._guard(
            "add a status event",
            lambda: self.repository.add_status_event(
                to_status,
                run_id=run.id if run is not None else None,
                task_key=task_key or (run.key if run is not None else None),
                from_status=from_status,
                agent_id=run.agent if run is not None else None,
                metadata=metadata,
            ),
        )

    def task_status(
        self,
        key: str,
        to_status: str,
        *,
        from_status: str | None = None,
        at: datetime | None = None,
        agent_id: str | None = None,
        command_name: str | None = None,
        job: str | None = None,
        project: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> StatusWrite | None:
        """Write that task ``key`` (of ``project``, when given) moved to ``to_status`` at ``at``
        (default now; an aware datetime, possibly in the past). ``from_status`` defaults to the
        task's last known status; a different one is stored with a warning (logged, and on the
        result). The same code path as ``llmledger task status`` and ``POST
        /v1/tasks/{key}/status`` (:func:`llmledger.forecast.status.write_status`). Never
        raises: a failure is logged and counted, and None returned (also for a remote
        ledger, whose server resolves ``from_status``)."""
        if self._remote is not None:
            body = {
                "id": uuid.uuid4().hex,
                "to_status": to_status,
                "from_status": from_status,
                "at": (at or datetime.now(UTC)).isoformat(),
                "agent_id": agent_id,
                "command_name": command_name,
                "job": job,
                "project": project,
                "metadata": dict(metadata) if metadata else None,
            }
            body = {name: value for name, value in body.items() if value is not None}
            self._guard("write a task status", self._remote.status_event, key, body)
            return None
        from llmledger.forecast.status import write_status

        return self._guard(
            "write a task status",
            lambda: write_status(
                self.repository,
                key,
                to_status,
                from_status=from_status,
                at=at,
                agent_id=agent_id,
                command_name=command_name,
                job=job,
                project=project,
                metadata=metadata,
            ),
        )

    # -- reading -------------------------------------------------------------------------

    def totals(self, run_id: str, *, inclusive: bool = True) -> Totals:
        """Usage and cost of a run: its whole subtree (default) or its own calls.

        A remote ledger drains its spool first, then asks the service (``GET /v1/runs/{id}``);
        the cost comes back as the JSON float the service prints."""
        if self._remote is not None:
            self.flush()
            document = self._remote.run_json(run_id)
            return _totals_of(document["run"]["inclusive" if inclusive else "own"])
        self.flush()
        by_model = self.repository.run_usage(run_id, inclusive=inclusive)
        return Totals.total(by_model.values())

    def totals_or_empty(self, run_id: str | None) -> Totals:
        """:meth:`totals` of a run's subtree; empty totals when there is no run or the store
        cannot be read (logged, counted and reported: it never raises)."""
        if run_id is None:
            return Totals()
        totals = self._guard("read the totals", self.totals, run_id)
        return totals if totals is not None else Totals()

    # -- failure handling ----------------------------------------------------------------

    def _guard(
        self, what: str, action: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> _T | None:
        """``action(*args, **kwargs)``, or None if it raises: the one place that keeps the rule
        that llmledger never raises into the user's code.

        The error is logged as "llmledger could not <what>", counted in :attr:`failures` and
        reported to the observers (:meth:`_failed`). Internal to the package; the runner, the
        plan orchestrator and the integrations use it too.
        """
        try:
            return action(*args, **kwargs)
        except Exception as exc:
            self._failed(what, exc)
            return None

    def _failed(self, what: str, exc: Exception) -> None:
        """Log, count and report a failure (to observers, unless an observer failed)."""
        self.failures += 1
        debug = _log.isEnabledFor(logging.DEBUG)
        _log.warning(
            "llmledger could not %s: %s: %s", what, type(exc).__name__, exc, exc_info=debug
        )
        if what != "observer":
            for observer in self.observers:
                try:
                    observer.on_failure(exc, what)
                except Exception:  # an observer's own failure must not recurse
                    _log.exception("llmledger observer failed in on_failure")


def _totals_of(data: Mapping[str, Any]) -> Totals:
    """:class:`Totals` from the JSON object ``Totals.to_dict()`` wrote (``show --json``)."""
    cost = data.get("cost_usd")
    return Totals(
        usage=Usage(**{name: data.get(name) for name in BUCKETS}),
        cost_usd=None if cost is None else Decimal(str(cost)),
        unpriced_calls=int(data.get("unpriced_calls") or 0),
        calls=int(data.get("calls") or 0),
    )


def _dead_letter_handler(ledger: Ledger) -> Callable[[Sequence[Op], int | None, str], None]:
    """Counts a write the service refused as one of ``ledger``'s failures (weakly: the
    sender's thread must not keep a dropped ledger alive)."""
    import weakref

    from llmledger.remote import RemoteError

    ref = weakref.ref(ledger)

    def on_dead(ops: Sequence[Op], http_status: int | None, error: str) -> None:
        live = ref()
        if live is not None:
            for op in ops:
                live._failed(
                    f"send a {op.kind} (kept in the spool's dead letters)", RemoteError(error)
                )

    return on_dead


def _checked(name: str, value: Any, convert: Callable[[Any], Any], invalid: dict[str, str]) -> Any:
    """``convert(value)``, or None with the reason in ``invalid[name]`` when it cannot be."""
    if value is None:
        return None
    try:
        return convert(value)
    except (TypeError, ValueError, ArithmeticError) as exc:
        invalid.setdefault(name, f"{exc} (got {value!r:.80})")
        return None


def _money(value: Any) -> Decimal:
    """An amount of USD from a Decimal, int, float (through its ``str``: exact as written) or
    numeric string; finite, not negative, below :data:`MAX_USD`."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, float, str)):
        raise TypeError(
            f"an amount of USD must be a number or a numeric string, not {type(value).__name__}"
        )
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not amount.is_finite():
        raise ValueError("not a finite number")
    if amount < 0:
        raise ValueError("a cost must not be negative")
    if amount >= MAX_USD:
        raise ValueError(f"a cost of {MAX_USD:,} USD or more is not the cost of a call")
    return amount


def _instant(value: Any) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string; a naive one is taken as UTC
    (as the store does)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("not an ISO 8601 timestamp") from None
    if not isinstance(value, datetime):
        raise TypeError(
            f"a time must be a datetime or an ISO 8601 string, not {type(value).__name__}"
        )
    at: datetime = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST <= at < LATEST:  # what every source accepts (docs/import.md)
        raise ValueError("outside the accepted range (2000-01-01 to 2100-01-01 UTC)")
    return at


def _milliseconds(value: Any) -> int:
    """A duration in whole milliseconds from a number (rounded) or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise TypeError(f"a duration must be a number of milliseconds, not {type(value).__name__}")
    if isinstance(value, int):
        number = Decimal(value)
    else:
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError("not a number") from None
    if not number.is_finite() or number < 0:
        raise ValueError("a duration must be a finite number of milliseconds, not negative")
    return int(number.to_integral_value())


def _converted(call: Call, invalid: dict[str, str]) -> Call:
    """The call with its cost, times and duration in the types the store keeps (a
    :class:`Call` built by hand may hold a float cost or an ISO string); what cannot be
    converted is dropped and named in ``invalid``."""
    changes: dict[str, Any] = {}
    if call.reported_cost_usd is not None and type(call.reported_cost_usd) is not Decimal:
        changes["reported_cost_usd"] = _checked("cost_usd", call.reported_cost_usd, _money, invalid)
    for name in ("started_at", "finished_at"):
        value = getattr(call, name)
        if value is not None and (
            not isinstance(value, datetime)
            or value.tzinfo is None
            or not EARLIEST <= value < LATEST
        ):
            changes[name] = _checked(name, value, _instant, invalid)
    if call.duration_ms is not None and type(call.duration_ms) is not int:
        changes["duration_ms"] = _checked("duration_ms", call.duration_ms, _milliseconds, invalid)
    return replace(call, **changes) if changes else call


def repair_stale_runs(repo: Repository) -> list[str]:
    """Mark runs interrupted whose process on this host is gone (killed, crashed).

    Their calls are kept and rolled up. A run's finish time is that of the last call in its
    subtree (the last sign of its process alive), not the time of the repair; with no call,
    or a last call stamped before the run started, it stays unknown (NULL) and
    ``metadata["finished_at_unknown"]`` says why. Returns the ids of the runs repaired.
    """
    host = socket.gethostname()
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = conn.execute(
            select(runs.c.id, runs.c.owner_pid, runs.c.started_at)
            .where(runs.c.status == "running", runs.c.owner_host == host)
            .order_by(runs.c.started_at.desc())
        ).all()
    repaired = []
    for run_id, pid, started_at in rows:
        if pid is not None and not _process_alive(int(pid)):
            last = repo.last_call_at(run_id)
            why = None
            if last is None:
                why = "no call recorded in the run: when its process stopped is not known"
            elif started_at is not None and last < started_at:
                why = (
                    f"its last call ({last.isoformat()}) is stamped before the run started "
                    f"({started_at.isoformat()}): when its process stopped is not known"
                )
            repo.finalize_run(
                run_id,
                "interrupted",
                finished_at=None if why else last,
                finish_unknown=why is not None,
                metadata={"finished_at_unknown": why} if why else {"finished_at_from": "last call"},
            )
            repaired.append(run_id)
    return repaired


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
