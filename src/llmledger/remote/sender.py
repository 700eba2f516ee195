"""The sender: delivers a spool's writes to the server, in order, and deletes what it
acknowledged.

It runs in a background daemon thread of every remote ledger (and in the foreground of
``llmledger spool flush``). Only the holder of the spool's :class:`~.spool.SendLock` sends.
Consecutive calls of one run travel as one ``POST /v1/runs/{id}/calls`` of up to
``batch_size`` items; a batch leaves when it is full or when ``flush_interval`` has passed.
A network error, a 5xx, 408, 429, 401/403 (a key problem an operator can fix) and a 404 (the
run is not there yet) are retried with exponential backoff, honouring ``Retry-After``; any
other 4xx moves the op to the dead letters (a batch is first split so that only the bad item
goes there), as do the items a 200 lists as ``rejected``. Every write is idempotent on the
server (client-chosen run ids, dedupe keys and event ids), so a resend after a lost answer
stores nothing twice.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson

from llmledger.remote.spool import Op, SendLock, Spool

__all__ = ["DeadLetterHandler", "Sender", "StepResult"]

_log = logging.getLogger("llmledger")

#: A 404 (run or parent not on the server) is retried this many times, then dead-lettered:
#: the op it waited for was itself refused, or the server's ledger was replaced.
MAX_NOT_FOUND_TRIES = 12
#: The longest wait between retries, and the longest ``Retry-After`` honoured.
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 300.0
_FIRST_BACKOFF_S = 0.25

StepResult = Literal["idle", "sent", "retry"]
DeadLetterHandler = Callable[[Sequence[Op], int | None, str], None]


@dataclass(slots=True)
class _Outcome:
    """What the server said to one POST of ``ops``."""

    ack: list[Op]
    bury: list[tuple[Op, str]]
    retry_after: float | None = None
    error: str | None = None
    split: bool = False  # send these ops one by one (or in halves, for a 413) and look again
    http_status: int | None = None


class Sender:
    """Sends the ops of ``spool`` to the service at ``base_url``.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests). ``on_dead`` is told
    about ops moved to the dead letters (the remote ledger counts them as failures).
    """

    def __init__(
        self,
        base_url: str,
        spool: Spool,
        *,
        api_key: str | None = None,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        host: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        on_dead: DeadLetterHandler | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if flush_interval < 0:
            raise ValueError("flush_interval must not be negative")
        self.base_url = base_url.rstrip("/")
        self.spool = spool
        self.batch_size = min(batch_size, 1000)  # the service's limit per request
        self.flush_interval = flush_interval
        # The calls were made on this machine (the spool is a local file).
        self.host = host if host is not None else socket.gethostname()
        self.on_dead = on_dead
        self.lock = SendLock(spool.path)
        #: Ops the server acknowledged, ops dead-lettered, failed sends: since this sender began.
        self.sent = 0
        self.dead = 0
        self.failed_sends = 0
        self.last_error: str | None = None
        headers = {"Content-Type": "application/json", "User-Agent": "llmledger-remote"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._headers = headers
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._checkpointed_at = 0.0
        self._limit: int | None = None  # a smaller batch while a refused batch is split
        self._limit_until = 0
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        _SENDERS.add(self)

    def _forked(self) -> None:
        # In a forked child: the parent's thread is gone and its locks may be held forever.
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._thread_lock = threading.Lock()
        self._thread = None
        self._client = None

    # -- the background thread -----------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (again, in a forked child); idempotent."""
        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="llmledger-sender", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Send now rather than at the next tick (a batch filled up, a flush is asked)."""
        self._wake.set()

    def drain(self, timeout: float | None) -> bool:
        """Wait until every op appended before this call has left the spool (sent or
        dead-lettered), at most ``timeout`` seconds (None: no limit); True when it has.

        Another process holding the send lock may be the one that sends them; without a
        background thread, this sends in the foreground."""
        watermark = self.spool.last_seq()
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.running:
            return self.send_pending(deadline, upto=watermark)
        self.wake()
        while self.spool.any_pending(watermark):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if not self.running:
                return self.send_pending(deadline, upto=watermark)
            if deadline is not None and self._failures and self._retry_at > deadline:
                return False  # the next try comes after the deadline: waiting is pointless
            with self._progress:
                self._progress.wait(0.05 if left is None else min(0.05, left))
            if not self.lock.held:
                self.wake()  # the holder may be gone: try to take over
        return True

    def stop(self, *, join: bool = True) -> None:
        """Stop the background thread after its current request; let another process send.
        With ``join=False`` it only tells the thread to stop."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if not join:
            return
        if thread is not None and thread is not threading.current_thread():
            # A request in flight to a server that hangs is not waited for (a daemon thread);
            # what it carries is still in the spool, and resending it is harmless.
            thread.join(2.0)
            if thread.is_alive():
                return
        self._thread = None
        self.lock.release()
        if self._client is not None:
            self._client.close()
            self._client = None

    def _loop(self) -> None:
        wait = 0.0
        result: StepResult = "idle"
        while not self._stopping:
            self._wake.wait(wait)
            self._wake.clear()
            if self._stopping:
                break
            wait = self.flush_interval or 0.05
            pause = self._retry_at - time.monotonic()
            if pause > 0:
                wait = pause
                continue
            try:
                if not self.lock.acquire():
                    wait = max(wait, 0.5)
                    continue
            except OSError as exc:  # the cache directory is not writable: say so, retry
                self._backoff(None, f"send lock {self.lock.path}: {exc}")
                wait = max(self._retry_at - time.monotonic(), 0.0)
                continue
            result = "idle"
            while not self._stopping:
                result = self._safe_step()
                if result != "sent":
                    break
            if result == "retry":
                wait = max(self._retry_at - time.monotonic(), 0.0)
            self._checkpoint()
        self.lock.release()

    def _checkpoint(self) -> None:
        # Appends never checkpoint (spool.py); without this the write-ahead log would grow
        # for as long as the process runs. At most once a second, off record()'s lock.
        now = time.monotonic()
        if now - self._checkpointed_at < 1.0:
            return
        self._checkpointed_at = now
        try:
            self.spool.checkpoint()
        except Exception as exc:  # a busy spool: the next one checkpoints
            _log.debug("llmledger spool checkpoint skipped: %s", exc)

    # -- sending -------------------------------------------------------------------------

    def send_pending(self, deadline: float | None = None, *, upto: int | None = None) -> bool:
        """Send in this thread until no op with seq ≤ ``upto`` (any op) is left, waiting out
        backoffs, until ``deadline`` (``time.monotonic()``; None: no limit). Returns True when
        nothing (up to ``upto``) is left. Without the send lock it waits for its holder."""
        while self.spool.any_pending(upto):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            if not self.lock.acquire():
                time.sleep(0.05 if deadline is None else min(0.05, max(0.0, deadline - now)))
                continue
            pause = self._retry_at - now
            if pause > 0:
                if deadline is not None and now + pause > deadline:
                    return False  # the next try comes after the deadline
                time.sleep(pause)
            self._safe_step()
        return True

    def _safe_step(self) -> StepResult:
        try:
            return self.step()
        except Exception as exc:  # the spool failed (disk full, locked too long), or a bug
            self._backoff(None, f"{type(exc).__name__}: {exc}")
            _log.warning(
                "llmledger could not send its spool %s: %s: %s",
                self.spool.path,
                type(exc).__name__,
                exc,
                exc_info=_log.isEnabledFor(logging.DEBUG),
            )
            return "retry"
        finally:
            with self._progress:
                self._progress.notify_all()

    def step(self) -> StepResult:
        """Send the next batch and apply the answer: ``idle`` when the spool is empty,
        ``sent`` when ops left it (acknowledged or dead-lettered), ``retry`` when the send
        failed and the backoff is set."""
        ops = self.spool.next_batch(self._limit or self.batch_size)
        if not ops:
            self._limit, self._limit_until = None, 0
            return "idle"
        needed = _run_needed(ops[0])
        if needed is not None and self.spool.run_refused(needed):
            # Queued after its run was refused: it cannot be stored either.
            error = f"its run {needed} was refused (see the dead letters)"
            outcome = _Outcome([], [(op, error) for op in ops])
        else:
            outcome = self._post(ops)
        if outcome.split:
            self._limit = 1 if outcome.http_status != 413 else max(1, len(ops) // 2)
            self._limit_until = max(self._limit_until, ops[-1].seq)
            return "sent"
        if outcome.error is not None and not outcome.ack and not outcome.bury:
            self.spool.note_failure(ops, outcome.error)
            self._backoff(outcome.retry_after, outcome.error)
            return "retry"
        if outcome.ack:
            self.spool.ack([op.seq for op in outcome.ack])
            self.sent += len(outcome.ack)
        bury = list(outcome.bury)
        for op, error in outcome.bury:
            if op.kind == "run" and op.ref is not None:
                # What needs this run cannot be stored either: dead now, not after retries
                # that would hold up the whole queue.
                reason = f"its run {op.ref} was refused ({error})"
                bury += [(dependent, reason) for dependent in self.spool.dependents(op.ref)]
        for op, error in bury:
            self.spool.bury([op], outcome.http_status, error)
            self.dead += 1
            if self.on_dead is None:
                _log.warning(
                    "llmledger: the server refused a %s (spool seq %d), kept in the spool's "
                    "dead letters: %s",
                    op.kind,
                    op.seq,
                    error,
                )
                continue
            try:
                self.on_dead([op], outcome.http_status, error)
            except Exception:
                _log.exception("llmledger dead-letter handler failed")
        self._failures, self._retry_at = 0, 0.0
        if self._limit is not None and ops[-1].seq >= self._limit_until:
            self._limit, self._limit_until = None, 0
        return "sent"

    def _backoff(self, retry_after: float | None, error: str) -> None:
        self._failures += 1
        self.failed_sends += 1
        self.last_error = error
        delay = min(MAX_BACKOFF_S, _FIRST_BACKOFF_S * 2 ** (self._failures - 1))
        delay *= random.uniform(0.75, 1.0)
        if retry_after is not None:
            delay = max(min(retry_after, MAX_RETRY_AFTER_S), 0.0)
        self._retry_at = time.monotonic() + delay
        level = logging.WARNING if self._failures in (1, 5) or self._failures % 50 == 0 else 10
        _log.log(
            level,
            "llmledger could not send to %s (%s); retrying in %.1fs",
            self.base_url,
            error,
            delay,
        )

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                headers=self._headers, timeout=self._timeout, transport=self._transport
            )
        return self._client

    def _post(self, ops: Sequence[Op]) -> _Outcome:
        head = ops[0]
        if head.kind == "call":
            path = "/v1/calls" if head.ref is None else f"/v1/runs/{quote(head.ref, safe='')}/calls"
            body = _calls_body(ops, self.host)
        elif head.kind == "run":
            path, body = "/v1/runs", head.body
        elif head.kind == "finish":
            path, body = f"/v1/runs/{quote(head.ref or '', safe='')}/finish", head.body
        else:
            path, body = f"/v1/tasks/{quote(head.ref or '', safe='')}/status", head.body
        try:
            response = self._http().post(self.base_url + path, content=body)
        except httpx.HTTPError as exc:
            return _Outcome([], [], error=f"{type(exc).__name__}: {exc}")
        return _outcome(ops, response)


_SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sender in list(_SENDERS):
        sender._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run_needed(op: Op) -> str | None:
    """The run that must exist on the server for ``op`` to be stored."""
    if op.kind in ("call", "finish"):
        return op.ref
    if b'"parent_id"' not in op.body and b'"run_id"' not in op.body:
        return None
    try:
        body = orjson.loads(op.body)
    except orjson.JSONDecodeError:
        return None
    needed = body.get("parent_id" if op.kind == "run" else "run_id")
    return needed if isinstance(needed, str) else None


def _calls_body(ops: Sequence[Op], host: str | None) -> bytes:
    # The records are JSON in the spool already: join them rather than parse and re-dump.
    items = b",".join(b'{"call":' + op.body + b"}" for op in ops)
    tail = b"" if host is None else b',"host":' + orjson.dumps(host)
    return b'{"items":[' + items + b"]" + tail + b"}"


def _outcome(ops: Sequence[Op], response: httpx.Response) -> _Outcome:
    code = response.status_code
    if 200 <= code < 300:
        if ops[0].kind != "call":
            return _Outcome(list(ops), [], http_status=code)
        try:
            rejected = {
                int(item["index"]): str(item.get("error", "rejected"))
                for item in orjson.loads(response.content).get("rejected", [])
            }
        except (ValueError, TypeError, KeyError, AttributeError):
            rejected = {}
        ack = [op for i, op in enumerate(ops) if i not in rejected]
        bury = [
            (ops[i], f"rejected: {error}") for i, error in sorted(rejected.items()) if i < len(ops)
        ]
        return _Outcome(ack, bury, http_status=code)
    detail = _detail(response)
    error = f"HTTP {code}: {detail}"
    if code >= 500 or code in (401, 403, 408, 429):
        return _Outcome([], [], _retry_after(response), error, http_status=code)
    if code == 404:
        if ops[0].tries + 1 >= MAX_NOT_FOUND_TRIES:
            return _Outcome([], [(op, error) for op in ops], http_status=code)
        return _Outcome([], [], _retry_after(response), error, http_status=code)
    if len(ops) > 1:  # find the bad item(s): send one by one (a 413: in halves)
        return _Outcome([], [], error=error, split=True, http_status=code)
    return _Outcome([], [(ops[0], error)], http_status=code)


def _detail(response: httpx.Response) -> str:
    try:
        data: Any = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict) and "detail" in data:
        return str(orjson.dumps(data["detail"]).decode()[:500])
    return str(data)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
