"""Parse benchmark: throughput of Claude Code stream-json and transcript parsing.

Builds synthetic files of ~200k lines in a temp dir from the fixture line shapes (unique message
ids; each API message split into per-block lines as Claude Code writes them, with user and
summary lines in between), then times:

- ``parse(bytes)`` on the stream-json file (decode every line, group, remainder check);
- ``parse(bytes)`` on the transcript (decode every line, then dedupe);
- ``iter_transcript`` + ``dedupe_calls`` on the transcript (the importer's path: a byte test
  before decoding, so lines without usage are never decoded).

Each figure is the median of several rounds. Prints lines/s and MB/s and writes them to
bench/results/parse.json. Not a test: asserts nothing.

    .venv/bin/python bench/bench_parse.py [--lines 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from llmledger.sources import dedupe_calls, iter_transcript, parse

SHARED = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "claude-code"
RESULTS = Path(__file__).with_name("results")


def _shapes(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (SHARED / name).read_bytes().splitlines() if line]


def _synthesize(name: str, target: int) -> bytes:
    """Repeat the fixture's lines with fresh message/request ids until ``target`` lines."""
    shapes = _shapes(name)
    head = [s for s in shapes if s.get("type") in ("system", "summary")]
    body = [s for s in shapes if s.get("type") not in ("system", "summary", "result")]
    tail = [s for s in shapes if s.get("type") == "result"]
    out = [orjson.dumps(s) for s in head]
    round_no = 0
    while len(out) < target - len(tail):
        round_no += 1
        for shape in body:
            line = dict(shape)
            msg = line.get("message")
            if isinstance(msg, dict) and "id" in msg:
                line["message"] = {**msg, "id": f"{msg['id']}_{round_no}"}
            for key in ("request_id", "requestId"):
                if key in line:
                    line[key] = f"{line[key]}_{round_no}"
            out.append(orjson.dumps(line))
    out.extend(orjson.dumps(s) for s in tail)
    return b"\n".join(out) + b"\n"


def _median_seconds(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "lines_target": args.lines,
        "rounds": args.rounds,
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp, "stream.jsonl")
        stream.write_bytes(_synthesize("claude-stream-json.jsonl", args.lines))
        transcript = Path(tmp, "transcript.jsonl")
        transcript.write_bytes(_synthesize("claude-transcript.jsonl", args.lines))
        cases: dict[str, tuple[Path, Callable[[bytes], int]]] = {
            "stream_json parse()": (stream, lambda b: len(parse(b).calls)),
            "transcript parse()": (transcript, lambda b: len(parse(b).calls)),
            "transcript iter_transcript+dedupe": (
                transcript,
                lambda b: len(dedupe_calls(iter_transcript(b))),
            ),
        }
        for name, (path, run) in cases.items():
            data = path.read_bytes()
            lines = data.count(b"\n")
            calls = run(data)
            seconds = _median_seconds(lambda d=data, r=run: r(d), args.rounds)  # type: ignore[misc]
            figures = {
                "lines": lines,
                "megabytes": round(len(data) / 1e6, 2),
                "calls": calls,
                "median_seconds": round(seconds, 4),
                "lines_per_second": round(lines / seconds),
                "mb_per_second": round(len(data) / 1e6 / seconds, 1),
            }
            results["cases"][name] = figures
            print(
                f"{name:38} {lines:>8,} lines {figures['megabytes']:>7} MB "
                f"{calls:>7,} calls  {seconds * 1000:8.1f} ms  "
                f"{figures['lines_per_second']:>10,} lines/s  {figures['mb_per_second']:>6} MB/s"
            )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parse.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'parse.json'}")


if __name__ == "__main__":
    main()
