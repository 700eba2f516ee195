"""The race: 8 processes reserve and record $0.05 calls against one $1.00 block budget, on
SQLite and on the real PostgreSQL. The ledger must end with between $0.95 and $1.00 recorded
(exactly $1.00: every refusal comes when the budget is full), every refusal a BudgetExceeded,
and nobody stuck. Then processes killed while holding reservations: the budget is usable
again once their reservations expire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llmledger import Ledger
from llmledger.budgets import budget_status, make_budget, set_budget
from llmledger.budgets.guard import call_context
from llmledger.budgets.reserve import reserve
from llmledger.errors import BudgetExceeded

#: Long enough for a slow shared machine; a deadlock never ends, so this bounds it.
TIMEOUT = 240

# Each worker waits for "go" on stdin (so all start together), then loops reserve -> record
# until refused, and prints what it did as JSON. Any other exception fails it (exit 1).
_WORKER = r"""
import json, sys
from llmledger import BudgetExceeded, Ledger, Usage
ledger = Ledger(sys.argv[1])
ledger.repository
mode = sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
recorded = refused = 0
if mode == "hold":
    with ledger.reserve("0.05"):
        print("held", flush=True)
        sys.stdin.readline()  # killed here
while True:
    try:
        with ledger.reserve("0.05"):
            calls = ledger.record(Usage(input_tokens=100, output_tokens=10), model="m",
                                  cost_usd="0.05")
            assert len(calls) == 1, ledger.failures
            recorded += 1
    except BudgetExceeded as exc:
        refused += 1
        break
print(json.dumps({"recorded": recorded, "refused": refused, "failures": ledger.failures}))
"""


def _start(url: str, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, url, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _go(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def _finish(processes: list[subprocess.Popen[str]]) -> list[dict[str, int]]:
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def _recorded(url: str) -> tuple[Decimal, int]:
    with Ledger(url) as ledger:
        rows = ledger.repository.fetch("SELECT COUNT(*), SUM(cost_usd) FROM calls")
    count, pico = rows[0]
    return Decimal(pico or 0) / 10**12, int(count)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_eight_processes_never_overspend(backend: str, request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))
    with Ledger(url) as ledger:
        set_budget(ledger.repository, make_budget("race", "1.00"))
    workers = [_start(url, "loop") for _ in range(8)]
    _go(workers)
    results = _finish(workers)
    total, count = _recorded(url)
    assert Decimal("0.95") <= total <= Decimal("1.00")
    assert total == Decimal("1.00")  # a refusal only ever comes with the budget full
    assert count == sum(r["recorded"] for r in results) == 20
    assert all(r["refused"] == 1 for r in results)  # each stopped on a BudgetExceeded
    assert all(r["failures"] == 0 for r in results)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_killed_holders_free_the_budget_when_their_reservations_expire(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url"))
    with Ledger(url) as ledger:
        set_budget(ledger.repository, make_budget("race", "1.00"))
    holders = [_start(url, "hold") for _ in range(4)]
    _go(holders)
    for holder in holders:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
    for holder in holders:
        holder.send_signal(signal.SIGKILL)  # no finally, no release: the rows stay
        holder.communicate(timeout=TIMEOUT)  # reaps it and closes its pipes
        assert holder.returncode == -signal.SIGKILL
    workers = [_start(url, "loop") for _ in range(4)]
    _go(workers)
    results = _finish(workers)
    total, _ = _recorded(url)
    assert total == Decimal("0.80")  # the dead hold $0.20 until their reservations expire
    assert sum(r["recorded"] for r in results) == 16
    with Ledger(url) as ledger:
        repo = ledger.repository
        budget = make_budget("race", "1.00")
        assert budget_status(repo, budget).reserved_usd == Decimal("0.20")
        context = call_context(None, model=None, provider=None)
        with pytest.raises(BudgetExceeded):
            reserve(repo, Decimal("0.05"), context)
        # Ten minutes later (the default expiry) the dead's reservations no longer hold.
        later = datetime.now(UTC) + timedelta(minutes=10, seconds=1)
        for _ in range(4):
            assert reserve(repo, Decimal("0.05"), context, now=later).budgets == ("race",)
        with pytest.raises(BudgetExceeded):
            reserve(repo, Decimal("0.05"), context, now=later)
