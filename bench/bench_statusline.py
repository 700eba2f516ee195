"""Status line benchmark: ``llmledger statusline`` as Claude Code runs it, a new process with
the hook JSON on stdin, on a warm ledger of a year of logs.

Generates a year of Claude Code logs with bench/gen_claude_tree.py (1,500 sessions, 600k lines
by default, ending now), imports them, adds a live session whose turns end now (so that today,
the active block and the burn rate have something to show), and times, as separate processes:

- unchanged: the transcript has not grown since the last run (Claude Code redraws the line);
- grown: one turn (a user line and an assistant line) is appended before each run, as after
  each assistant message. By default the line is printed from the ledger at once and a
  background process imports those bytes (the bench waits for it between runs, untimed);
  with ``--wait`` the run imports them before it prints.

Prints median and p90 wall times, the median CPU time of each process (user + system: less
moved by other work on the machine than the wall time) and the line shown, and writes
bench/results/statusline.json. With ``--baseline SRC`` (another checkout's ``src``) each case
also runs that code (``PYTHONPATH=SRC``, the same console script and ledger), alternating run
by run with this one, so that both see the same machine: the machine is shared and its speed
drifts.
Python writes its bytecode caches here as an installed package would (PYTHONDONTWRITEBYTECODE
is unset for the runs). Asserts nothing.

    .venv/bin/python bench/bench_statusline.py [--runs 30] [--files 1500] [--lines 600000]
        [--work DIR] [--baseline OTHER/src]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from gen_claude_tree import generate  # noqa: E402

# A new live session each run, so the line shows this run's turns only.
_SESSION = str(uuid.uuid4())
_PROJECT = "-home-dev-live"


def _turn(n: int, at: datetime) -> str:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    base = {
        "isSidechain": False,
        "userType": "external",
        "cwd": "/home/dev/live",
        "sessionId": _SESSION,
        "version": "2.0.14",
        "gitBranch": "main",
        "timestamp": stamp,
    }
    user = {**base, "type": "user", "uuid": f"u{n}", "message": {"role": "user", "content": "go"}}
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 900,
        "cache_read_input_tokens": 40000 + 500 * (n % 200),
        "output_tokens": 700,
        "service_tier": "standard",
    }
    assistant = {
        **base,
        "type": "assistant",
        "uuid": f"a{n}",
        "requestId": f"req_{_SESSION[:8]}_{n}",
        "message": {
            "id": f"msg_{_SESSION[:8]}_{n}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": "done"}],
            "usage": usage,
        },
    }
    return json.dumps(user) + "\n" + json.dumps(assistant) + "\n"


_CPU: list[float] = []  # each run's CPU seconds (user + system), in order


def _run(cmd: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}): {proc.stderr[-2000:]!r}")
    return wall, proc.stdout.decode().strip()


def _timed(runs: int, run: Any, sides: int = 1) -> list[dict[str, float]]:
    """Wall and CPU figures of ``runs`` calls of ``run(n, side)`` (each returns a wall time)
    for each of ``sides`` (the code under test, the baseline), the sides alternating."""
    walls: list[list[float]] = [[] for _ in range(sides)]
    cpus: list[list[float]] = [[] for _ in range(sides)]
    for n in range(runs):
        for k in range(sides):
            side = (n + k) % sides  # who goes first alternates too
            walls[side].append(run(n, side))
            cpus[side].append(_CPU[-1])
    return [
        {**_figures(w), "cpu_median_ms": round(statistics.median(c) * 1000, 1)}
        for w, c in zip(walls, cpus, strict=True)
    ]


def _imported(ledger: Path, path: Path, timeout: float = 60) -> None:
    """Wait until the ledger's import state has all of ``path`` (a background import)."""
    import sqlite3

    size, deadline = path.stat().st_size, time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(ledger) as conn:
            row = conn.execute(
                'SELECT "offset" FROM import_state WHERE path = ?', [str(path)]
            ).fetchone()
        if row and row[0] >= size:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} was not imported within {timeout:.0f} s")


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
    }


def main() -> None:
    """Command-line entry: build the ledger, time the status line, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--work", type=Path, help="Directory to build in (default: a temp dir).")
    parser.add_argument(
        "--baseline", type=Path, help="Another checkout's src/ to time, run by run with this one."
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-statusline-"))
    work.mkdir(parents=True, exist_ok=True)
    tree, ledger = work / "claude", work / "ledger.db"
    now = datetime.now(UTC)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        CLAUDE_CONFIG_DIR=str(tree),
        LLMLEDGER_DB=f"sqlite:///{ledger}",
        TZ="UTC",
        XDG_CACHE_HOME=str(work / "cache"),
        XDG_STATE_HOME=str(work / "state"),
    )
    script = str(Path(sys.executable).with_name("llmledger"))
    if not tree.exists():
        size = generate(tree, args.files, args.lines, 7, start=now - timedelta(days=366), days=365)
        print(
            f"tree: {size['files']:,} files, {size['lines']:,} lines, {size['bytes'] / 1e6:.0f} MB"
        )
    live = tree / "projects" / _PROJECT / f"{_SESSION}.jsonl"
    live.parent.mkdir(parents=True, exist_ok=True)
    turns = 40
    live.write_text(
        "".join(_turn(n, now - timedelta(minutes=2 * (turns - n))) for n in range(turns))
    )
    if not ledger.exists():
        took, _ = _run([script, "import"], b"", env)
        print(f"first import: {took:.1f} s")
    _run([script, "daily", "--json"], b"", env)  # imports the live session; warms the caches
    hook = json.dumps(
        {
            "session_id": _SESSION,
            "transcript_path": str(live),
            "cwd": "/home/dev/live",
            "model": {"id": "claude-sonnet-4-5-20250929", "display_name": "Sonnet 4.5"},
            "workspace": {"current_dir": "/home/dev/live", "project_dir": "/home/dev/live"},
            "version": "2.0.14",
            "cost": {"total_cost_usd": 1.23, "total_duration_ms": 600000},
        }
    ).encode()
    cmd = [script, "statusline", "--no-color"]
    envs = [env]
    if args.baseline:
        envs.append({**env, "PYTHONPATH": str(args.baseline.resolve())})
    for side_env in envs:
        _, line = _run(cmd, hook, side_env)  # warm: bytecode, the context-window cache
    [calls] = [
        int(r)
        for r in subprocess.run(
            [
                sys.executable,
                "-c",
                "import sqlite3,sys; print(sqlite3.connect(sys.argv[1])"
                ".execute('select count(*) from calls').fetchone()[0])",
                str(ledger),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    ]

    added = 0

    def grow(wait: bool, side: int) -> float:
        nonlocal added
        with live.open("a") as fh:
            fh.write(_turn(turns + added, datetime.now(UTC)))
        added += 1
        took = _run([*cmd, "--wait"] if wait else cmd, hook, envs[side])[0]
        _imported(ledger, live)
        return took

    load = os.getloadavg()
    sides = len(envs)
    [startup] = _timed(args.runs, lambda n, _: _run([sys.executable, "-c", "pass"], b"", env)[0])
    unchanged = _timed(args.runs, lambda n, side: _run(cmd, hook, envs[side])[0], sides)
    grown = _timed(args.runs, lambda n, side: grow(False, side), sides)
    grown_wait = _timed(args.runs, lambda n, side: grow(True, side), sides)
    _, last = _run(cmd, hook, env)
    cases = {"unchanged": unchanged, "grown_one_turn": grown, "grown_one_turn_wait": grown_wait}
    results: dict[str, Any] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": [load, os.getloadavg()],
        "ledger_calls": calls,
        "runs": args.runs,
        "python_startup": startup,
        **{name: figures[0] for name, figures in cases.items()},
        "line": last,
    }
    if args.baseline:
        results["baseline"] = {"src": str(args.baseline), **{n: f[1] for n, f in cases.items()}}
    print(
        f"ledger: {calls:,} calls over a year; load average {load[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(f"line: {line}")
    rows = [("python_startup", startup)]
    for name, figures in cases.items():
        rows.append((name, figures[0]))
        if args.baseline:
            rows.append(("  baseline", figures[1]))
    for name, f in rows:
        print(
            f"{name:>20}: median {f['median_ms']:7.1f} ms   p90 {f['p90_ms']:7.1f} ms   "
            f"CPU median {f['cpu_median_ms']:6.1f} ms"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "statusline.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
