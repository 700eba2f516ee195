"""The service's speed: HTTP ingest, record() on a remote ledger, and a large run tree's read.

Starts ``llmledger serve`` on a free loopback port for each store and prints figures (and writes
bench/results/api.json). Not a test: asserts nothing. Targets (issue 15): ingest >= 10,000
calls/s with batches of 500 on SQLite and PostgreSQL; record() on a remote ledger p50 <= 50 us,
p99 <= 1 ms; end-to-end delay until the server has a call p50 <= 1 s; the figure for a run tree
of 10,000 descendants read through GET /v1/runs/{id}.

    .venv/bin/python bench/bench_api.py [--calls 20000] [--pg postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import PG_DEFAULT, pg_schema, serve

RESULTS = Path(__file__).with_name("results")


def _batch(prefix: str, start: int, size: int) -> dict[str, Any]:
    items = [
        {
            "call": {
                "dedupe_key": f"{prefix}-{i}",
                "source": "api",
                "model": "gpt-4o",
                "provider": "openai",
                "started_at": "2026-11-30T12:00:00+00:00",
                "usage": {"input_tokens": 563, "cache_read_tokens": 1920, "output_tokens": 1036},
            }
        }
        for i in range(start, start + size)
    ]
    return {"items": items}


def ingest(url: str, calls: int, clients: int, batch: int = 500) -> float:
    """Calls per second posted by ``clients`` threads in batches of ``batch`` (bodies made
    before the clock starts)."""
    prefix = uuid.uuid4().hex[:8]
    per_client = calls // clients
    bodies = [
        [
            json.dumps(_batch(f"{prefix}-{c}", i, batch)).encode()
            for i in range(0, per_client, batch)
        ]
        for c in range(clients)
    ]
    errors: list[str] = []

    def post_all(mine: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for body in mine:
                r = client.post(
                    "/v1/calls", content=body, headers={"content-type": "application/json"}
                )
                if r.status_code != 200 or r.json()["rejected"]:
                    errors.append(f"{r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=post_all, args=(b,)) for b in bodies]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} batches failed, e.g. {errors[0]}")
    return per_client * clients / elapsed


def remote_record(url: str, n: int, spool_dir: Path) -> dict[str, float]:
    """record() on a remote ledger (p50/p99 µs), and the delay until the server has a call
    (p50/p90 ms, default flush settings)."""
    from llmledger.ledger import Ledger
    from llmledger.usage import Usage

    os.environ["XDG_CACHE_HOME"] = str(spool_dir)
    ledger = Ledger(url)
    samples: list[int] = []
    usage = Usage(input_tokens=563, cache_read_tokens=1920, output_tokens=1036)
    with ledger.run("task", "bench") as run:
        for _ in range(50):
            ledger.record(usage, model="gpt-4o")
        ledger.flush()
        for _ in range(n):
            t0 = time.perf_counter_ns()
            ledger.record(usage, model="gpt-4o")
            samples.append(time.perf_counter_ns() - t0)
        ledger.flush()
        delays: list[float] = []
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(20):
                before = client.get(f"/v1/runs/{run.id}").json()["run"]["own"]["calls"]
                t0 = time.perf_counter()
                ledger.record(usage, model="gpt-4o", dedupe_key=f"delay-{run.id}-{i}")
                while client.get(f"/v1/runs/{run.id}").json()["run"]["own"]["calls"] == before:
                    time.sleep(0.005)
                delays.append((time.perf_counter() - t0) * 1000)
    ledger.close()
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "record_p50_us": round(statistics.median(samples) / 1000, 1),
        "record_p99_us": round(q[98] / 1000, 1),
        "delay_p50_ms": round(statistics.median(delays), 1),
        "delay_max_ms": round(max(delays), 1),
    }


def run_tree(db: str, url: str, descendants: int) -> dict[str, float]:
    """GET /v1/runs/{id} of a root with ``descendants`` runs under it (100 tasks of 99
    attempts each), made directly in the store."""
    from llmledger.store import open_repository

    repo = open_repository(db)
    root = repo.create_run("plan", name="bench tree")
    for t in range(descendants // 100):
        task = repo.create_run("task", key=f"t{t}", parent_id=root)
        for a in range(99):
            repo.create_run("attempt", parent_id=task, attempt=a + 1)
    repo.engine.dispose()
    times = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(5):
            t0 = time.perf_counter()
            r = client.get(f"/v1/runs/{root}")
            times.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    return {"descendants": descendants, "get_ms_median": round(statistics.median(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--tree", type=int, default=10000)
    parser.add_argument("--pg", default=PG_DEFAULT)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count()}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        pg = cleanup.enter_context(pg_schema(args.pg, "bench_api"))
        stores = {"sqlite": f"sqlite:///{tmp / 'ledger.db'}", "postgresql": pg}
        for name, db in stores.items():
            for workers in (1, 2):
                with serve(db, workers) as url:
                    for clients in (1, 4):
                        rate = ingest(url, args.calls, clients)
                        key = f"ingest_{name}_{workers}w_{clients}c_calls_per_s"
                        results[key] = round(rate)
                        print(f"{key}: {rate:,.0f}")
        with serve(stores["sqlite"]) as url:
            figures = remote_record(url, args.records, tmp / "cache")
            results["remote_record"] = figures
            print("remote record():", figures)
            tree = run_tree(stores["sqlite"], url, args.tree)
            results["run_tree_sqlite"] = tree
            print("run tree (sqlite):", tree)
        with serve(stores["postgresql"]) as url:
            tree = run_tree(stores["postgresql"], url, args.tree)
            results["run_tree_postgresql"] = tree
            print("run tree (postgresql):", tree)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
