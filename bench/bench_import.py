"""Import benchmark: ccusage ``daily --json --offline`` vs our first import + report and our
repeat report, on the same generated Claude Code tree.

Generates a tree with bench/gen_claude_tree.py (or uses ``--tree``), installs
``ccusage@20.0.24`` into a temp dir with npm (the newest whose native binary installs here;
skipped with a note when npm or the registry is unavailable), then times each command as a
separate process, with its peak RSS from ``/usr/bin/time``:

- ccusage: ``ccusage daily --json --offline`` (re-reads every log each time);
- ours, first: ``llmledger daily --json`` on an empty ledger (imports everything, then queries);
- ours, repeat: ``llmledger daily --json`` again (stats the files, reads nothing, queries).

Rounds interleave the tools (the machines' speed drifts within minutes), so each round's
ratio compares runs made side by side. Prints medians and ratios and writes
bench/results/import.json. Asserts nothing.

    .venv/bin/python bench/bench_import.py [--files 1500] [--lines 600000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CCUSAGE = "ccusage@20.0.24"
sys.path.insert(0, str(HERE))

from gen_claude_tree import generate  # noqa: E402


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of one command run to completion."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    wrapped = [time_bin, "-f", "%M", *cmd] if os.path.exists(time_bin) else cmd
    start = time.perf_counter()
    proc = subprocess.run(wrapped, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rss = 0.0
    if wrapped is not cmd:
        last = proc.stderr.strip().splitlines()[-1]
        rss = int(last) / 1024 if last.isdigit() else 0.0
    return wall, rss, proc.stdout


def _install_ccusage(into: Path) -> Path | None:
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: ccusage is not timed")
        return None
    proc = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(into), CCUSAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    binary = into / "node_modules" / ".bin" / "ccusage"
    if proc.returncode != 0 or not binary.exists():
        print(f"could not install {CCUSAGE}: {proc.stderr.strip()[-500:]}")
        return None
    return binary


def _summary(samples: list[tuple[float, float]]) -> dict[str, Any]:
    walls = [w for w, _ in samples]
    return {
        "median_seconds": round(statistics.median(walls), 3),
        "min_seconds": round(min(walls), 3),
        "runs": [round(w, 3) for w in walls],
        "peak_rss_mb": round(max(r for _, r in samples), 1),
    }


def _tokens(stdout: str, ours: bool) -> int:
    doc = json.loads(stdout)
    return int(doc["totals"]["total_tokens"] if ours else doc["totals"]["totalTokens"])


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--lines", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, help="an existing tree (else one is generated)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmledger-bench-import-"))
    try:
        tree = args.tree
        if tree is None:
            tree = work / "claude"
            figures = generate(tree, args.files, args.lines, seed=7)
            print(
                f"tree: {figures['files']:,} files, {figures['lines']:,} lines, "
                f"{figures['bytes'] / 1e6:.0f} MB"
            )
        empty = work / "home"
        empty.mkdir()
        # A user's Python caches bytecode; a sandbox that sets PYTHONDONTWRITEBYTECODE would
        # make every run compile llmledger's modules again (tens of ms of a repeat report).
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = {
            **base,
            "HOME": str(empty),
            "CLAUDE_CONFIG_DIR": str(tree),
            "CODEX_HOME": str(empty / "codex"),
            "GEMINI_DATA_DIR": str(empty / "gemini"),
            "TZ": "UTC",
        }
        llmledger = str(Path(sys.executable).with_name("llmledger"))
        results: dict[str, Any] = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "tree": str(tree) if args.tree else {"files": args.files, "lines": args.lines},
            "rounds": args.rounds,
        }
        binary = _install_ccusage(work / "npm")
        theirs: list[tuple[float, float]] = []
        first: list[tuple[float, float]] = []
        repeat: list[tuple[float, float]] = []
        ratios: list[float] = []
        # Rounds interleave the tools: this machine's speed drifts within minutes, so each
        # round's ratio compares runs made side by side.
        for round_no in range(args.rounds):
            if binary is not None:
                wall, rss, out = _timed([str(binary), "daily", "--json", "--offline"], env)
                theirs.append((wall, rss))
                results["ccusage_total_tokens"] = _tokens(out, ours=False)
            db = f"sqlite:///{work / f'ledger{round_no}.db'}"
            ours_env = {**env, "LLMLEDGER_DB": db}
            wall, rss, out = _timed([llmledger, "daily", "--json", "--tz", "UTC"], ours_env)
            first.append((wall, rss))
            if theirs:
                ratios.append(wall / theirs[-1][0])
            wall, rss, out = _timed([llmledger, "daily", "--json", "--tz", "UTC"], ours_env)
            repeat.append((wall, rss))
        if theirs:
            results["ccusage_daily"] = _summary(theirs)
        results["ours_first_import_and_daily"] = _summary(first)
        results["ours_repeat_daily"] = _summary(repeat)
        results["ours_total_tokens"] = _tokens(out, ours=True)
        if theirs:
            base = statistics.median(w for w, _ in theirs)
            results["ratio_first_vs_ccusage"] = round(
                statistics.median(w for w, _ in first) / base, 2
            )
            results["ratio_first_vs_ccusage_per_round"] = [round(r, 2) for r in ratios]
            # Each round's runs were made side by side: the middle round is the fairest figure
            # when the machine's speed drifts during the benchmark.
            results["ratio_first_vs_ccusage_median_round"] = round(statistics.median(ratios), 2)
            results["ratio_repeat_vs_ccusage"] = round(
                statistics.median(w for w, _ in repeat) / base, 3
            )
        print(json.dumps(results, indent=2))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "import.json").write_text(json.dumps(results, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
