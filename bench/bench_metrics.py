"""``GET /metrics`` scrape time on a ledger of N calls (default 1,000,000), SQLite and
PostgreSQL: the collector's queries (``call_metrics``, runs) plus the text exposition, timed through
the app (``TestClient``), median and best of several scrapes after a first warm one.

    python bench/bench_metrics.py [--calls N] [--pg URL | --no-pg]

The calls are written straight into the store (24 models of 4 providers x 3 sources x 17
agents, one unknown, x 2 statuses x 4 cost statuses: about 5,000 label sets in use), by bulk
insert with the roll-ups' triggers off and both rebuilt after, so that a million rows
take seconds, not minutes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from _service import PG_DEFAULT, pg_schema
from llmledger.api import create_app
from llmledger.store import metrics_rollup, open_repository, rollup

_COLUMNS = (
    "dedupe_key",
    "source",
    "provider",
    "model",
    "agent_id",
    "started_at",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_status",
    "currency",
    "status",
    "token_provenance",
    "recorded_at",
)


def _rows(count: int, start: int) -> list[tuple[object, ...]]:
    rng = random.Random(start)
    base = 1_780_000_000_000_000
    out = []
    for i in range(start, start + count):
        model = rng.randrange(24)
        status = rng.choice(("reported", "computed", "computed", "included", "unpriced"))
        cost = None if status == "unpriced" else rng.randrange(0, 10**10)
        out.append(
            (
                f"bench:{i}",
                rng.choice(("claude_code", "codex", "api")),
                f"provider{model % 4}",  # a model is served by one provider
                f"model-{model}",
                f"agent-{rng.randrange(16)}" if i % 5 else None,
                base + i * 1_000_000,
                rng.randrange(10_000),
                rng.randrange(50_000),
                200,
                100 if i % 2 else None,
                rng.randrange(2_000),
                rng.randrange(500) if i % 3 == 0 else None,
                cost,
                status,
                "USD",
                "error" if i % 50 == 0 else "ok",
                "reported",
                base,
            )
        )
    return out


def fill(url: str, total: int) -> None:
    """Write ``total`` calls into the (new) ledger at ``url``."""
    repo = open_repository(url)
    try:
        with repo.engine.begin() as conn:
            rollup.drop_triggers(conn)
            metrics_rollup.drop_triggers(conn)
            mark = "?" if conn.dialect.name == "sqlite" else "%s"
            sql = (
                f"INSERT INTO calls ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join(mark for _ in _COLUMNS)})"
            )
            for start in range(0, total, 50_000):
                conn.exec_driver_sql(sql, _rows(min(50_000, total - start), start))
            rollup.rebuild(conn)
            rollup.create_triggers(conn)
            metrics_rollup.rebuild(conn)
            metrics_rollup.create_triggers(conn)
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE calls")
    finally:
        repo.engine.dispose()


def scrape_times(url: str, repeat: int) -> list[float]:
    """Seconds per ``GET /metrics`` (after one warm-up scrape)."""
    with TestClient(create_app(url, no_auth=True)) as client:
        assert client.get("/metrics").status_code == 200
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = client.get("/metrics")
            times.append(time.perf_counter() - start)
            assert response.status_code == 200
        return times


def _report(name: str, url: str, calls: int, repeat: int) -> None:
    start = time.perf_counter()
    fill(url, calls)
    built = time.perf_counter() - start
    times = scrape_times(url, repeat)
    print(
        f"{name}: {calls:,} calls (written in {built:.1f} s): scrape median "
        f"{statistics.median(times) * 1000:.0f} ms, best {min(times) * 1000:.0f} ms"
    )


def main() -> None:
    """Parse the arguments and print one line per store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL server URL")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _report("sqlite", f"sqlite:///{Path(tmp) / 'ledger.db'}", args.calls, args.repeat)
    if not args.no_pg:
        with pg_schema(args.pg, "bench_metrics") as url:
            _report("postgresql", url, args.calls, args.repeat)


if __name__ == "__main__":
    main()
