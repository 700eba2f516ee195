"""The remote writer behind ``Ledger("http://host:8787")``: appends each write to the spool
and lets the sender deliver it.

Nothing here waits for the network but :meth:`RemoteWriter.flush`, :meth:`RemoteWriter.close`
and :meth:`RemoteWriter.get_json`. Ids are chosen here (run ids, dedupe keys, status event
ids), so a write sent twice is stored once.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import socket
import weakref
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson

# Imported here, not on the first record(): pydantic's import would be that call's latency.
from llmledger.records import record_of_call  # noqa: F401
from llmledger.remote.sender import DeadLetterHandler, Sender
from llmledger.remote.spool import Spool

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_FLUSH_INTERVAL",
    "RemoteError",
    "RemoteWriter",
    "is_remote_url",
    "spool_path_for",
]

_log = logging.getLogger("llmledger")

DEFAULT_BATCH_SIZE = 500
DEFAULT_FLUSH_INTERVAL = 0.2
#: How long close() and interpreter exit wait for the spool to drain.
DEFAULT_CLOSE_TIMEOUT = 10.0


class RemoteError(Exception):
    """The service refused a write for good (it is in the spool's dead letters), or a read
    failed."""


def is_remote_url(url: str | None) -> bool:
    """Whether ``url`` names an llmledger service (``http://`` or ``https://``)."""
    return url is not None and url.lower().startswith(("http://", "https://"))


def spool_path_for(url: str) -> Path:
    """The spool file of the service at ``url``: ``LLMLEDGER_SPOOL`` when set, else
    ``spool-<sha256(url)[:16]>.db`` in the user cache directory."""
    configured = os.environ.get("LLMLEDGER_SPOOL")
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("llmledger", appauthor=False)) / f"spool-{digest}.db"


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class RemoteWriter:
    """Writes to the service at ``url`` through the spool at ``spool`` (default:
    :func:`spool_path_for`). ``api_key`` defaults to ``LLMLEDGER_API_KEY``."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        spool: str | Path | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        on_dead: DeadLetterHandler | None = None,
        transport: httpx.BaseTransport | None = None,
        start: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("LLMLEDGER_API_KEY")
        self.host = socket.gethostname()
        self.close_timeout = close_timeout
        self.spool = Spool(spool if spool is not None else spool_path_for(self.url), self.url)
        self.sender = Sender(
            self.url,
            self.spool,
            api_key=self.api_key,
            batch_size=batch_size,
            flush_interval=flush_interval,
            host=self.host,
            transport=transport,
            on_dead=on_dead,
        )
        self._transport = transport
        self._pid = os.getpid()
        self._unsent = 0
        self._closed = False
        if start:
            # The spool file is opened by the first write (or the sender): a cache directory
            # that cannot be written shows up as counted failures, never in the constructor.
            self.sender.start()
            _at_exit(self)
            # A dropped writer's thread stops (what it did not send stays in the spool).
            weakref.finalize(self, self.sender.stop, join=False)

    # -- writes (never wait for the network) -------------------------------------------

    def _appended(self, count: int) -> None:
        if self._pid != os.getpid() or self._closed:
            # A forked child, or a ledger used again after close(): send again.
            self._pid, self._closed = os.getpid(), False
            self.sender.start()
        self._unsent += count
        if self._unsent >= self.sender.batch_size:
            self._unsent = 0
            self.sender.wake()

    def create_run(self, body: Mapping[str, Any]) -> None:
        """Queue ``POST /v1/runs`` (the body carries the run's id)."""
        self.spool.append("run", str(body["id"]), [_dump({**body, "host": self.host})])
        self._appended(1)

    def add_calls(self, run_id: str | None, records: Sequence[Mapping[str, Any]]) -> None:
        """Queue calls (canonical call records, each with its dedupe key) of run ``run_id``."""
        if records:
            self.spool.append("call", run_id, [_dump(record) for record in records])
            self._appended(len(records))

    def finish_run(self, run_id: str, body: Mapping[str, Any]) -> None:
        """Queue ``POST /v1/runs/{id}/finish``."""
        self.spool.append("finish", run_id, [_dump(body)])
        self._appended(1)

    def status_event(self, task_key: str, body: Mapping[str, Any]) -> None:
        """Queue ``POST /v1/tasks/{key}/status`` (the body carries the event's id and time)."""
        self.spool.append("status", task_key, [_dump(body)])
        self._appended(1)

    # -- draining and reading -----------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued so far is delivered (or dead-lettered), at most
        ``timeout`` seconds (None: :attr:`close_timeout`); True when the spool drained."""
        return self.sender.drain(self.close_timeout if timeout is None else timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Drain (at most ``timeout`` seconds), then stop sending. What is left stays in the
        spool for the next process or ``llmledger spool flush``; a warning says so."""
        if self._closed:
            return True
        self._closed = True
        drained = self.flush(timeout)
        self.sender.stop()
        if not drained:
            left = self.spool.pending()
            if left:
                _log.warning(
                    "llmledger: %d write(s) for %s are still in the spool %s (%s); the next "
                    "process using it sends them, or run `llmledger spool flush --db %s`",
                    left,
                    self.url,
                    self.spool.path,
                    self.sender.last_error or "not sent yet",
                    self.url,
                )
        self.spool.close()
        return drained

    def get_json(self, path: str) -> Any:
        """``GET`` a read endpoint of the service and return its JSON; raises
        :class:`RemoteError` on a failure."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with httpx.Client(transport=self._transport, timeout=30.0) as client:
                response = client.get(self.url + path, headers=headers)
        except httpx.HTTPError as exc:
            raise RemoteError(f"GET {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise RemoteError(f"GET {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def run_json(self, run_id: str) -> Any:
        """``GET /v1/runs/{id}``: the run's tree as ``llmledger show --json`` prints it."""
        return self.get_json(f"/v1/runs/{quote(run_id, safe='')}")


def _at_exit(writer: RemoteWriter) -> None:
    # A weak reference: registering must not keep a dropped ledger (and its thread) alive.
    ref = weakref.ref(writer)

    def drain() -> None:
        live = ref()
        if live is not None and not live._closed and live._pid == os.getpid():
            try:
                live.close()
            except Exception as exc:  # interpreter exit: report, never raise
                _log.warning("llmledger could not drain its spool at exit: %s", exc)

    atexit.register(drain)
    weakref.finalize(writer, atexit.unregister, drain)
