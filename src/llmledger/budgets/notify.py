"""Webhook notifications: a JSON POST of ``{"text": ...}`` (Slack-compatible), sent on a
background thread with retries, so that a slow or failing webhook never holds up the caller.

A notification still being retried when the interpreter exits is lost (the thread is a
daemon); :func:`drain` waits for those in flight.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx

__all__ = ["RETRY_DELAYS", "TIMEOUT", "drain", "post"]

_log = logging.getLogger("llmledger")
#: Seconds to wait before each retry (so 1 + len attempts in all).
RETRY_DELAYS: tuple[float, ...] = (0.5, 2.0, 5.0)
#: Seconds a single attempt may take.
TIMEOUT = 5.0
_pending: set[threading.Thread] = set()
_lock = threading.Lock()


def _send(url: str, text: str) -> None:
    error = ""
    for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
        if delay:
            time.sleep(delay)  # a background thread: nobody waits on it
        try:
            response = httpx.post(url, json={"text": text}, timeout=TIMEOUT)
            if response.status_code < 300:
                return
            error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        _log.debug("budget webhook attempt %d to %s failed: %s", attempt + 1, url, error)
    _log.warning("llmledger could not notify the budget webhook %s: %s", url, error)


def _run(url: str, text: str) -> None:
    try:
        _send(url, text)
    finally:
        with _lock:
            _pending.discard(threading.current_thread())


def post(url: str, text: str) -> threading.Thread:
    """POST ``{"text": text}`` to ``url`` on a background thread (retried); returns at once."""
    thread = threading.Thread(target=_run, args=(url, text), name="llmledger-webhook", daemon=True)
    with _lock:
        _pending.add(thread)
    thread.start()
    return thread


def drain(timeout: float | None = None) -> bool:
    """Wait (at most ``timeout`` seconds in all) for notifications in flight; False when some
    are still being sent."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _lock:
            threads = list(_pending)
        if not threads:
            return True
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        threads[0].join(left)
        if deadline is not None and time.monotonic() >= deadline and threads[0].is_alive():
            return False
