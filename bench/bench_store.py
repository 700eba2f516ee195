"""Store benchmark: calls inserted per second (SQLite and PostgreSQL, batches of 1,000) and
own + inclusive usage of a run with 10,000 descendants.

Prints figures and writes them to bench/results/store.json. Not a test: asserts nothing.

    .venv/bin/python bench/bench_store.py [--calls 100000] [--pg URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy
import sqlalchemy.exc

from llmledger import Call, Usage
from llmledger.store import Repository, open_repository
from llmledger.store.repository import new_run_id
from llmledger.store.schema import runs

RESULTS = Path(__file__).with_name("results")


def _calls(n: int, prefix: str) -> list[Call]:
    return [
        Call(
            Usage(input_tokens=i % 500, cache_read_tokens=i % 9000, output_tokens=i % 700),
            source="bench",
            model="claude-sonnet-4-5",
            dedupe_key=f"{prefix}:{i}",
        )
        for i in range(n)
    ]


def bench_inserts(repo: Repository, total: int, batch: int = 1000) -> float:
    run = repo.create_run("session")
    calls = _calls(total, uuid.uuid4().hex)
    start = time.perf_counter()
    for i in range(0, total, batch):
        repo.add_calls(calls[i : i + batch], run_id=run)
    return total / (time.perf_counter() - start)


def bench_tree(repo: Repository, descendants: int = 10_000) -> dict[str, float]:
    root = repo.create_run("plan")
    # Build a tree of sections -> tasks -> attempts directly (bulk), one call per node.
    now = datetime.now(UTC)
    rows: list[dict[str, object]] = []
    parents = [root]
    while len(rows) < descendants:
        run_id = new_run_id()
        rows.append(
            {
                "id": run_id,
                "parent_id": parents[len(rows) // 10],
                "root_id": root,
                "kind": "task",
                "status": "succeeded",
                "started_at": now,
            }
        )
        parents.append(run_id)
    with repo.engine.begin() as conn:
        conn.execute(runs.insert(), rows)
    call_rows = []
    for call, row in zip(_calls(descendants, uuid.uuid4().hex), rows, strict=True):
        call_rows.extend(repo.call_rows([call], run_id=str(row["id"])))
    repo.write_call_rows(call_rows)
    own, inclusive = [], []
    for _ in range(5):
        t = time.perf_counter()
        repo.run_usage(root)
        own.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        repo.run_usage(root, inclusive=True)
        inclusive.append((time.perf_counter() - t) * 1000)
    return {"own_ms": statistics.median(own), "inclusive_ms": statistics.median(inclusive)}


@contextlib.contextmanager
def _pg_schema(server: str) -> Iterator[str | None]:
    """A URL to a fresh schema on the PostgreSQL server (None when it cannot be reached),
    dropped afterwards, so that the benchmark leaves the database as it found it."""
    schema = f"llmledger_bench_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server)
    try:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    except sqlalchemy.exc.OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield f"{server}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, _pg_schema(args.pg) as pg_url:
        targets = {"sqlite": f"sqlite:///{tmp}/bench.db", "postgresql": pg_url}
        for name, url in targets.items():
            if url is None:
                print(f"{name}: skipped (no server at {args.pg})")
                continue
            repo = open_repository(url)
            per_second = bench_inserts(repo, args.calls)
            tree = bench_tree(repo)
            results[name] = {"calls_per_second": per_second, **tree}
            print(
                f"{name:10s} inserts: {per_second:,.0f} calls/s (batches of 1,000, "
                f"{args.calls:,} calls); run with 10,000 descendants: own "
                f"{tree['own_ms']:.1f} ms, inclusive {tree['inclusive_ms']:.1f} ms"
            )
            repo.engine.dispose()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
