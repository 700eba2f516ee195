"""Forecast benchmark: seconds for an ETA and for an ETA with its 10-point backtest, from
synthetic status histories of 200 to 3,000 tasks (five events each: todo, in_progress,
ready_to_review, ready_to_qa, completed; a task started every 30 minutes, 0.2-5 h per step).

Pure functions only (no store): the events as ``eta_report`` holds them once loaded. Each
figure is the median of several rounds. Prints figures and writes them to
bench/results/forecast.json. Not a test: asserts nothing.

    .venv/bin/python bench/bench_forecast.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmledger.forecast.backtest import run_backtest
from llmledger.forecast.eta import Eta, compute_eta
from llmledger.forecast.lanes import DEFAULT_LANES
from llmledger.forecast.timeline import History, StatusEvent
from llmledger.forecast.velocity import lane_velocities, samples_of

RESULTS = Path(__file__).with_name("results")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEPS = ("todo", "in_progress", "ready_to_review", "ready_to_qa", "completed")


def _events(tasks: int) -> list[StatusEvent]:
    rng = random.Random(1)
    events: list[StatusEvent] = []
    for i in range(tasks):
        moment = T0 + timedelta(hours=i * 0.5)
        for status in STEPS:
            events.append(StatusEvent(f"k{i}", status, moment, seq=len(events)))
            moment += timedelta(hours=rng.uniform(0.2, 5))
    return events


def _once(events: list[StatusEvent], at: datetime, backtest: bool) -> float:
    start = time.perf_counter()
    history = History(events)
    samples = samples_of(history, DEFAULT_LANES, at)

    def predict(moment: datetime) -> Eta:
        found = lane_velocities(history, DEFAULT_LANES, moment, samples=samples)
        return compute_eta(history, DEFAULT_LANES, found, moment)

    predict(at)
    if backtest:
        run_backtest(history, DEFAULT_LANES, predict, points=10, until=at)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for tasks in (200, 1000, 3000):
        events = _events(tasks)
        at = T0 + timedelta(hours=tasks * 0.5 + 10)
        eta = statistics.median(_once(events, at, False) for _ in range(args.rounds))
        both = statistics.median(_once(events, at, True) for _ in range(args.rounds))
        rows.append({"tasks": tasks, "events": len(events), "eta_s": eta, "eta_backtest_s": both})
        print(
            f"{tasks:>5} tasks {len(events):>6} events: eta {eta:.3f} s, with backtest {both:.3f} s"
        )
    RESULTS.mkdir(exist_ok=True)
    document = {"python": platform.python_version(), "rounds": args.rounds, "rows": rows}
    (RESULTS / "forecast.json").write_text(json.dumps(document, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
