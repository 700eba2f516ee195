"""Budget enforcement overhead: ``reserve()`` + the settling ``record()`` per call, beside a
plain ``record()``, on SQLite and PostgreSQL, alone and with 8 processes at once.

Each ledger holds one ``block`` budget (a day window, no scope, a limit never reached) and
``--prefill`` calls of today (the spend query reads the window's calls). Every call is a
durable ``record()`` of a $0.001 reported cost; with the budget it runs inside
``ledger.reserve("0.001")``. With 8 processes each records ``--calls`` calls under the budget
at once: the reservations queue on the lock (SQLite's write lock, PostgreSQL's row lock on
the budget), which is the price of exactness.

Prints p50/p99 in milliseconds and writes bench/results/budgets.json. Not a test: asserts
nothing.

    .venv/bin/python bench/bench_budgets.py [--calls 300] [--prefill 20000] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from _service import PG_DEFAULT, pg_schema
from llmledger import Ledger, Usage
from llmledger.budgets import make_budget, set_budget
from llmledger.call import Call

RESULTS = Path(__file__).with_name("results")
PROCESSES = 8


def _ms(samples_ns: list[int]) -> dict[str, float]:
    qs = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return {
        "p50_ms": round(statistics.median(samples_ns) / 1e6, 3),
        "p99_ms": round(qs[98] / 1e6, 3),
        "n": len(samples_ns),
    }


def _calls(ledger: Ledger, n: int, *, budget: bool) -> list[int]:
    out = []
    usage = Usage(input_tokens=100, output_tokens=20)
    for _ in range(n):
        t0 = time.perf_counter_ns()
        if budget:
            with ledger.reserve("0.001"):
                ledger.record(usage, model="m", cost_usd="0.001")
        else:
            ledger.record(usage, model="m", cost_usd="0.001")
        out.append(time.perf_counter_ns() - t0)
    return out


def _prepare(url: str, prefill: int) -> None:
    with Ledger(url) as ledger:
        repo = ledger.repository
        now = datetime.now(UTC)
        batch = [
            Call(
                usage=Usage(input_tokens=100, output_tokens=20),
                source="api",
                model="m",
                dedupe_key=f"prefill:{uuid.uuid4().hex}",
                started_at=now,
                reported_cost_usd=Decimal("0.0001"),
            )
            for _ in range(prefill)
        ]
        for start in range(0, len(batch), 5000):
            repo.add_calls(batch[start : start + 5000])


def _worker(url: str, n: int) -> None:
    with Ledger(url) as ledger:
        ledger.repository  # noqa: B018 - open it before the clock starts
        samples = _calls(ledger, n, budget=True)
    print(json.dumps(samples))


def _concurrent(url: str, n: int) -> dict[str, Any]:
    script = str(Path(__file__).resolve())
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, script, "--worker", url, "--calls", str(n)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    samples: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        samples += json.loads(out.strip().splitlines()[-1])
    wall = time.perf_counter() - started
    return {**_ms(samples), "calls_per_s": round(len(samples) / wall, 1), "wall_s": round(wall, 2)}


def _backend(url: str, args: argparse.Namespace) -> dict[str, Any]:
    _prepare(url, args.prefill)
    with Ledger(url) as ledger:
        ledger.repository  # noqa: B018
        _calls(ledger, 30, budget=False)  # warm up
        plain = _ms(_calls(ledger, args.calls, budget=False))
        set_budget(ledger.repository, make_budget("bench", "900000", window="day"))
        _calls(ledger, 30, budget=True)
        guarded = _ms(_calls(ledger, args.calls, budget=True))
    return {
        "record": plain,
        "reserve_and_record": guarded,
        "overhead_p50_ms": round(guarded["p50_ms"] - plain["p50_ms"], 3),
        f"{PROCESSES}_processes": _concurrent(url, args.calls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--prefill", type=int, default=20_000)
    parser.add_argument("--pg", default=PG_DEFAULT)
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.calls)
        return
    results: dict[str, Any] = {"machine": platform.platform(), "calls": args.calls}
    results["prefill"] = args.prefill
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = _backend(f"sqlite:///{tmp}/bench.db", args)
    if not args.no_pg:
        with pg_schema(args.pg, "bench_budgets") as url:
            results["postgresql"] = _backend(url, args)
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budgets.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
