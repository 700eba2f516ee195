"""``llmledger import --to URL`` into a server on PostgreSQL, against ``llmledger import --db
postgresql+psycopg://...`` straight into PostgreSQL (and into SQLite, for scale), on the
benchmark tree of bench/gen_claude_tree.py (1,500 files, 600,000 lines by default).

Each round: a fresh PostgreSQL schema for the server and one for the direct import, a fresh
staging directory; the first import (everything new) and a repeat (nothing new) of each. The
``import --to`` time splits into the staging import (into SQLite, as ``import --db sqlite``)
and the send; its send rate is calls sent / send time. Prints figures (and writes
bench/results/import_to.json); asserts nothing.

    .venv/bin/python bench/bench_import_to.py [--files 1500] [--lines 600000] [--rounds 1]
        [--workers 1] [--tree DIR] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import EXE as _EXE
from _service import PG_DEFAULT, pg_schema, serve
from gen_claude_tree import generate

RESULTS = Path(__file__).with_name("results")


def _import(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """Run ``llmledger import ... --json``; (seconds, its JSON)."""
    start = time.perf_counter()
    done = subprocess.run(
        [_EXE, "import", *args, "--json"], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"import {' '.join(args)} failed: {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def _round(tree: Path, pg: str, workers: int, work: Path) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLMLEDGER_")}
    empty = work / "none"
    empty.mkdir(exist_ok=True)
    env = {
        **base,
        "CLAUDE_CONFIG_DIR": str(tree),
        "CODEX_HOME": str(empty),
        "GEMINI_DATA_DIR": str(empty),
    }
    out: dict[str, Any] = {}
    staging = work / f"staging-{uuid.uuid4().hex[:8]}"
    sqlite_db = f"sqlite:///{work / f'direct-{uuid.uuid4().hex[:8]}.db'}"
    first, summary = _import(["--db", sqlite_db], env)
    out["direct_sqlite"] = {"first_s": first, "calls": summary["calls_added"]}
    out["direct_sqlite"]["repeat_s"] = _import(["--db", sqlite_db], env)[0]
    with pg_schema(pg, "bench_import_to") as direct:
        first, summary = _import(["--db", direct], env)
        repeat = _import(["--db", direct], env)[0]
        out["direct_postgresql"] = {
            "first_s": first,
            "repeat_s": repeat,
            "calls": summary["calls_added"],
        }
    with pg_schema(pg, "bench_import_to") as served, serve(served, workers) as url:
        to_env = {**env, "LLMLEDGER_STAGING_DIR": str(staging)}
        first, summary = _import(["--to", url], to_env)
        repeat, again = _import(["--to", url], to_env)
        sent = summary["sent"]
        calls = httpx.get(f"{url}/v1/reports/daily", timeout=600).json()["totals"]["calls"]
        send_s = max(first - out["direct_sqlite"]["first_s"], 1e-9)
        out["import_to_postgresql"] = {
            "first_s": first,
            "repeat_s": repeat,
            "sent": sent["sent"],
            "accepted": sent["accepted"],
            "batches": sent["batches"],
            "repeat_sent": again["sent"]["sent"],
            "server_calls": calls,
            "send_s_estimate": send_s,
            "send_calls_per_s_estimate": sent["sent"] / send_s,
        }
    shutil.rmtree(staging, ignore_errors=True)
    return out


def main() -> None:
    """Generate (or take) the tree, time the rounds, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--tree", type=Path, help="an existing tree (else one is generated)")
    parser.add_argument("--pg", default=os.environ.get("LLMLEDGER_TEST_PG", PG_DEFAULT))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-to-") as tmp:
        work = Path(tmp)
        tree = args.tree
        if tree is None:
            tree = work / "tree"
            figures = generate(tree, args.files, args.lines, seed=7)
            print(f"tree: {figures}", flush=True)
        rounds = []
        for n in range(args.rounds):
            result = _round(tree, args.pg, args.workers, work)
            rounds.append(result)
            d_sq, d_pg, to_pg = (
                result["direct_sqlite"],
                result["direct_postgresql"],
                result["import_to_postgresql"],
            )
            print(
                f"round {n + 1}: import --db sqlite {d_sq['first_s']:.2f} s "
                f"(repeat {d_sq['repeat_s']:.2f} s) · "
                f"import --db postgresql {d_pg['first_s']:.2f} s "
                f"(repeat {d_pg['repeat_s']:.2f} s) · "
                f"import --to (server on postgresql, {args.workers} worker) "
                f"{to_pg['first_s']:.2f} s (repeat {to_pg['repeat_s']:.2f} s, "
                f"sent again {to_pg['repeat_sent']}) · calls {to_pg['sent']:,} sent, "
                f"{to_pg['server_calls']:,} on the server · send ≈ "
                f"{to_pg['send_s_estimate']:.2f} s ≈ {to_pg['send_calls_per_s_estimate']:,.0f} "
                "calls/s",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "import_to.json").write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "args": {k: str(v) for k, v in vars(args).items()},
                "rounds": rounds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
