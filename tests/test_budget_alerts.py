"""Budget warnings: each threshold fires once per window (observer event, log warning,
webhook POST of {"text": ...}), a forecast overrun once per window, and a failing or slow
webhook neither breaks nor holds up recording. The webhook is a local http.server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmledger import Ledger, Usage
from llmledger.budgets import make_budget, set_budget
from llmledger.budgets import notify as notify_module
from llmledger.budgets.alerts import BudgetEvent, check_budget


class _Hook:
    """A webhook on 127.0.0.1: keeps each JSON body; answers ``status``; a handler may be
    held until ``release`` is set."""

    def __init__(self, status: int = 200, hold: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = status
        self.hold = hold
        self.received = threading.Event()
        self.release = threading.Event()
        self.released_in_time: list[bool] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.received.set()
                if hook.hold:
                    hook.released_in_time.append(hook.release.wait(20))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    hook = _Hook()
    yield hook
    hook.close()


class _Events:
    def __init__(self) -> None:
        self.events: list[BudgetEvent] = []

    def on_record(self, *args: object) -> None:
        pass

    def on_finalize(self, *args: object) -> None:
        pass

    def on_failure(self, *args: object) -> None:
        pass

    def on_budget_event(self, event: BudgetEvent) -> None:
        self.events.append(event)


def _spend(ledger: Ledger, cost: str) -> None:
    assert ledger.record(Usage(input_tokens=1), model="m", cost_usd=cost)


def test_each_threshold_fires_once(
    db_url: str, hook: _Hook, caplog: pytest.LogCaptureFixture
) -> None:
    observer = _Events()
    with Ledger(db_url, observers=[observer]) as ledger:
        set_budget(ledger.repository, make_budget("team", "1", notify=hook.url))
        with caplog.at_level(logging.WARNING, logger="llmledger"):
            for cost in ("0.30", "0.30", "0.10", "0.20", "0.20", "0.10"):
                _spend(ledger, cost)  # 30%, 60%, 70%, 90%, 110%, 120%
        assert notify_module.drain(30)
        assert ledger.failures == 0
    assert [e.threshold for e in observer.events] == [50, 80, 100]
    assert [e.kind for e in observer.events] == ["threshold"] * 3
    # One thread per notification: they may arrive in any order.
    texts = sorted((body["text"] for body in hook.bodies), key=lambda t: int(t.split()[3][:-1]))
    assert len(texts) == 3
    for text, percent in zip(texts, (50, 80, 100), strict=True):
        assert text.startswith(f"budget 'team' reached {percent}% of its limit")
    assert texts[0].endswith("spent $0.60 of $1.00 (total)")
    assert sum("reached 80% of its limit" in r.getMessage() for r in caplog.records) == 1
    # Another process (another ledger on the same database) does not fire them again.
    with Ledger(db_url) as other:
        _spend(other, "0.10")
    assert notify_module.drain(30)
    assert len(hook.bodies) == 3


def test_a_new_window_fires_again_and_a_forecast_overrun_once(db_url: str) -> None:
    with Ledger(db_url) as ledger:
        repo = ledger.repository
        budget = make_budget("daily", "10", window="day", thresholds="50")
        for day in ("2026-12-02", "2026-12-03"):
            ledger.record(
                Usage(input_tokens=1),
                model="m",
                cost_usd="3",
                started_at=datetime.fromisoformat(f"{day}T01:00:00+00:00"),
            )
        # 6 hours into the 3rd, $3 spent: forecast $12 over a $10 limit; 30% used.
        morning = datetime(2026, 12, 3, 6, tzinfo=UTC)
        first = check_budget(repo, budget, now=morning)
        assert [(e.kind, e.threshold) for e in first] == [("forecast", None)]
        assert "on pace to overrun: forecast $12.00" in first[0].text
        assert check_budget(repo, budget, now=morning) == []
        ledger.record(
            Usage(input_tokens=1),
            model="m",
            cost_usd="3",
            started_at=datetime(2026, 12, 3, 7, tzinfo=UTC),
        )
        later = datetime(2026, 12, 3, 8, tzinfo=UTC)
        assert [e.threshold for e in check_budget(repo, budget, now=later)] == [50]
        assert check_budget(repo, budget, now=later) == []
        # The 2nd was its own window: its 30% crossed nothing, and at 22:00 its pace was
        # $3 over 22 h, a forecast of $3.27: no warning either.
        assert check_budget(repo, budget, now=datetime(2026, 12, 2, 22, tzinfo=UTC)) == []


def test_a_failing_webhook_is_retried_and_breaks_nothing(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify_module, "RETRY_DELAYS", (0.0, 0.0))
    failing = _Hook(status=500)
    try:
        with Ledger(sqlite_url) as ledger:
            set_budget(
                ledger.repository, make_budget("b", "1", thresholds="50", notify=failing.url)
            )
            _spend(ledger, "0.60")
            assert notify_module.drain(30)
            assert ledger.failures == 0
            _spend(ledger, "0.10")
    finally:
        failing.close()
    assert len(failing.bodies) == 3  # one try and two retries, for the one warning


def test_a_slow_webhook_does_not_hold_up_recording(sqlite_url: str) -> None:
    slow = _Hook(hold=True)
    try:
        with Ledger(sqlite_url) as ledger:
            set_budget(ledger.repository, make_budget("b", "1", thresholds="50", notify=slow.url))
            calls = ledger.record(Usage(input_tokens=1), model="m", cost_usd="0.60")
            # record() returned while the webhook is still holding the request.
            assert calls
            assert slow.received.wait(20)
            slow.release.set()
            assert notify_module.drain(30)
    finally:
        slow.close()
    assert slow.released_in_time == [True]
