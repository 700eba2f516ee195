"""Pricing benchmark: µs per call priced by llmledger's Pricer with a warm cache, next to
genai-prices' calc_price on the same usages.

Calls mix five models (Claude with 5m/1h cache writes, gpt-5 with reasoning, gpt-4o, Gemini
2.5 Pro across its 200k tier, o3 across a price change) and random bucket sizes. Each figure
is the median of several rounds; per-call p50/p90 come from timing single calls.

Prints figures and writes them to bench/results/pricing.json. Not a test: asserts nothing.

    .venv/bin/python bench/bench_pricing.py [--calls 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import genai_prices

from llmledger import Call, Usage
from llmledger.pricing import Pricer

RESULTS = Path(__file__).with_name("results")
MODELS = [
    ("claude-sonnet-4-5-20250929", "anthropic"),
    ("gpt-5", "openai"),
    ("gpt-4o", "openai"),
    ("gemini-2.5-pro", "google"),
    ("o3", "openai"),
]


def make_calls(n: int, seed: int = 7) -> list[Call]:
    rng = random.Random(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    calls = []
    for _ in range(n):
        model, provider = rng.choice(MODELS)
        cache_write = rng.randint(0, 20_000)
        output = rng.randint(1, 8_000)
        usage = Usage(
            input_tokens=rng.randint(0, 250_000),
            cache_read_tokens=rng.randint(0, 100_000),
            cache_write_tokens=cache_write,
            cache_write_1h_tokens=rng.randint(0, cache_write),
            output_tokens=output,
            reasoning_tokens=rng.randint(0, output),
        )
        at = start + timedelta(minutes=rng.randint(0, 60 * 24 * 300))
        calls.append(Call(usage, "bench", model=model, provider=provider, started_at=at))
    return calls


def genai_usage(usage: Usage) -> genai_prices.Usage:
    cache_write = usage.cache_write_tokens or 0
    return genai_prices.Usage(
        input_tokens=(usage.input_tokens or 0) + (usage.cache_read_tokens or 0) + cache_write,
        cache_read_tokens=usage.cache_read_tokens or 0,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=usage.cache_write_1h_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        output_reasoning_tokens=usage.reasoning_tokens or 0,
    )


def per_call_us(fn: Callable[[Call], Any], calls: list[Call], rounds: int) -> float:
    """Median over rounds of (round time / calls), in µs."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for call in calls:
            fn(call)
        times.append((time.perf_counter() - t0) / len(calls) * 1e6)
    return statistics.median(times)


def single_call_percentiles(fn: Callable[[Call], Any], calls: list[Call]) -> dict[str, float]:
    clock = time.perf_counter_ns
    samples = []
    for call in calls:
        t0 = clock()
        fn(call)
        samples.append((clock() - t0) / 1000)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2],
        "p90_us": samples[int(len(samples) * 0.9)],
        "p99_us": samples[int(len(samples) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    calls = make_calls(args.calls)
    pricer = Pricer(None)
    for call in calls[:100]:  # warm the cache, as a long-running recorder has it
        pricer.price(call)

    def calc(call: Call) -> Decimal:
        assert call.model is not None
        return genai_prices.calc_price(
            genai_usage(call.usage),
            call.model,
            provider_id=call.provider,
            genai_request_timestamp=call.started_at,
        ).total_price

    calc(calls[0])  # import and first-call costs are not the steady state
    quantum = Decimal("1e-12")
    mismatches = sum(
        pricer.price(c).cost_usd != calc(c).quantize(quantum, rounding=ROUND_HALF_EVEN)
        for c in calls[:2_000]
    )

    ours = per_call_us(pricer.price, calls, args.rounds)
    theirs = per_call_us(calc, calls[: max(1, args.calls // 4)], max(3, args.rounds // 2))
    ours_pct = single_call_percentiles(pricer.price, calls)
    theirs_pct = single_call_percentiles(calc, calls[: max(1, args.calls // 4)])

    results = {
        "calls": args.calls,
        "rounds": args.rounds,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "genai_prices": genai_prices.__version__,
        "pricer_us_per_call_median": round(ours, 3),
        "pricer_calls_per_second": round(1e6 / ours),
        "pricer_single_call": {k: round(v, 3) for k, v in ours_pct.items()},
        "calc_price_us_per_call_median": round(theirs, 3),
        "calc_price_single_call": {k: round(v, 3) for k, v in theirs_pct.items()},
        "speedup": round(theirs / ours, 1),
        "mismatches_vs_calc_price_in_2000": mismatches,
    }
    print(f"Pricer.price (warm):   {ours:8.2f} µs/call  ({results['pricer_calls_per_second']:,}/s)")
    print(
        f"  single call          p50 {ours_pct['p50_us']:.2f} µs, p90 {ours_pct['p90_us']:.2f} µs"
    )
    print(f"genai calc_price:      {theirs:8.2f} µs/call")
    print(f"  single call          p50 {theirs_pct['p50_us']:.2f} µs")
    print(f"speed-up:              {results['speedup']}x; mismatches in 2,000: {mismatches}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "pricing.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
