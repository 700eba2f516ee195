"""The dashboard's server time on a ledger of N calls (default 1,000,000), SQLite and
PostgreSQL: each page rendered through the app in-process (``TestClient``, so no network),
median and best of several requests after a warm one.

    python bench/bench_dashboard.py [--calls N] [--repeat 5] [--pg URL | --no-pg] [--db URL]
        [--only overview]

``--db`` times the pages on a ledger already filled (by an earlier run of this script's
``fill``), SQLite or PostgreSQL, instead of filling new ones.

The ledger is bench_metrics.py's (24 models x 3 sources x 17 agents, calls one second apart,
about 11.6 days per million; bulk-inserted with the roll-ups rebuilt after). Target (issue 19):
the overview <= 300 ms, which reads the roll-ups (``call_rollup_hour`` for whole hours,
``call_rollup`` for the quarter hours at the ends of a range), not the calls. The top agents
and tasks (``/overview/top``), the models page and a project-filtered overview read ``calls``
and are printed beside it for what they are. Not a test: asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from _service import PG_DEFAULT, pg_schema
from bench_metrics import fill
from llmledger.api import create_app

#: The pages timed: name -> path. The seeded calls start on 2026-05-29 (UTC).
PAGES = {
    "overview, all time (roll-up)": "/?period=custom&tz=UTC",
    "  the API's answer to it (GET /v1/reports/daily)": "/v1/reports/daily?tz=UTC",
    "overview, all time, Europe/Berlin (roll-up)": "/?period=custom&tz=Europe/Berlin",
    "overview, 7 days of dates (roll-up)": (
        "/?period=custom&since=2026-05-30&until=2026-06-05&tz=UTC"
    ),
    "overview, one model (roll-up)": "/?period=custom&tz=UTC&model=model-3",
    "overview, one project (calls)": "/?period=custom&tz=UTC&project=none",
    "top agents and tasks (calls, runs)": "/overview/top?period=custom&tz=UTC&fragment=1",
    "models and prices (calls)": "/models?period=custom&tz=UTC",
    "runs, first page": "/runs",
}


def page_times(url: str, repeat: int, only: str = "") -> dict[str, list[float]]:
    """Seconds per request of each page whose name holds ``only`` (after one warm-up request
    each)."""
    out: dict[str, list[float]] = {}
    with TestClient(create_app(url, no_auth=True)) as client:
        for name, path in PAGES.items():
            if only not in name:
                continue
            assert client.get(path).status_code == 200, path
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                response = client.get(path)
                times.append(time.perf_counter() - start)
                assert response.status_code == 200, path
            out[name] = times
    return out


def _report(store: str, url: str, calls: int | None, repeat: int, only: str = "") -> None:
    if calls is None:
        print(f"{store}: the ledger at {url}")
    else:
        start = time.perf_counter()
        fill(url, calls)
        print(f"{store}: {calls:,} calls (written in {time.perf_counter() - start:.1f} s)")
    for name, times in page_times(url, repeat, only).items():
        print(
            f"  {name}: median {statistics.median(times) * 1000:.0f} ms, "
            f"best {min(times) * 1000:.0f} ms"
        )


def main() -> None:
    """Parse the arguments and print the figures of each store."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL server URL")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--db", help="time the pages on this filled ledger only")
    parser.add_argument("--only", default="", help="only the pages whose name holds this")
    args = parser.parse_args()
    if args.db:
        _report("given", args.db, None, args.repeat, args.only)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        _report("sqlite", f"sqlite:///{path}", args.calls, args.repeat, args.only)
    if not args.no_pg:
        with pg_schema(args.pg, "bench_dashboard") as url:
            _report("postgresql", url, args.calls, args.repeat, args.only)


if __name__ == "__main__":
    main()
