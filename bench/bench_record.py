"""record() overhead per call, in memory (durable=False) and durable on SQLite, beside the time
of an OpenAI client call over a mocked transport, with and without instrument_openai.

Prints p50/p99 in microseconds and writes bench/results/record.json. Not a test: asserts
nothing. Targets (issue 4): record() p50 <= 50 us in memory, <= 500 us durable.

    .venv/bin/python bench/bench_record.py [--calls 5000] [--client-calls 1000]
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

from llmledger.ledger import Ledger
from llmledger.usage import Usage

RESULTS = Path(__file__).with_name("results")
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50 / p99 / mean of nanosecond samples, in microseconds."""
    qs = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return {
        "p50_us": round(statistics.median(samples_ns) / 1000, 1),
        "p99_us": round(qs[98] / 1000, 1),
        "mean_us": round(statistics.fmean(samples_ns) / 1000, 1),
        "n": len(samples_ns),
    }


def timed(fn: Callable[[int], Any], n: int, warmup: int = 50) -> list[int]:
    for i in range(warmup):
        fn(-1 - i)
    samples = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        samples.append(time.perf_counter_ns() - t0)
    return samples


def chat_payloads(n: int) -> list[dict[str, Any]]:
    chat = json.loads((FIXTURES / "openai" / "openai-chat.json").read_text())
    small = {k: chat[k] for k in ("object", "model", "created", "usage", "service_tier")}
    return [{**small, "id": f"chatcmpl-bench-{i}"} for i in range(-100, n)]


def bench_record(url: str, durable: bool, n: int) -> dict[str, Any]:
    """record() of a Usage and of an OpenAI chat completion dict (parsed), inside a run."""
    out: dict[str, Any] = {}
    usage = Usage(input_tokens=563, cache_read_tokens=1920, output_tokens=1036)
    payloads = chat_payloads(n)
    with Ledger(url, durable=durable) as ledger, ledger.run("session", "bench"):

        def rec_usage(i: int) -> None:
            ledger.record(usage, model="gpt-4.1-mini", provider="openai", dedupe_key=f"u{i}")

        def rec_chat(i: int) -> None:
            ledger.record(payloads[i + 100], format="openai_chat_completions")

        out["usage"] = percentiles(timed(rec_usage, n))
        out["openai_chat_dict"] = percentiles(timed(rec_chat, n))
        out["failures"] = ledger.failures
    return out


def bench_client(url: str, durable: bool, n: int) -> dict[str, Any]:
    """One chat.completions.create over httpx.MockTransport, plain and instrumented."""
    import httpx
    import openai

    from llmledger.integrations.openai import instrument_openai

    body = (FIXTURES / "openai" / "openai-chat.json").read_bytes()
    counter = iter(range(10**9))

    def handler(request: httpx.Request) -> httpx.Response:
        # A fresh id per response, so the durable ledger inserts instead of deduplicating.
        data = body.replace(b"chatcmpl-CAbX4n7Rk2pQ9sVw1YtZ3uHg6LmE", b"c-%d" % next(counter))
        return httpx.Response(200, content=data, headers={"content-type": "application/json"})

    def make() -> openai.OpenAI:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        return openai.OpenAI(api_key="bench", http_client=http, max_retries=0)

    messages: Any = [{"role": "user", "content": "hi"}]
    plain = make()
    with Ledger(url, durable=durable) as ledger:
        inst = instrument_openai(make(), ledger)

        def call_plain(i: int) -> None:
            plain.chat.completions.create(model="o4-mini", messages=messages)

        def call_inst(i: int) -> None:
            inst.chat.completions.create(model="o4-mini", messages=messages)

        # Interleave the two in rounds so drift (CPU frequency, caches) hits both alike.
        a: list[int] = []
        b: list[int] = []
        for _ in range(5):
            a += timed(call_plain, n // 5, warmup=10)
            b += timed(call_inst, n // 5, warmup=10)
        plain_p, inst_p = percentiles(a), percentiles(b)
        return {
            "uninstrumented": plain_p,
            "instrumented": inst_p,
            "overhead_p50_us": round(inst_p["p50_us"] - plain_p["p50_us"], 1),
            "failures": ledger.failures,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--client-calls", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "calls": args.calls,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, durable in (("memory", False), ("durable_sqlite", True)):
            url = f"sqlite:///{tmp}/{name}.db"
            results[f"record_{name}"] = bench_record(url, durable, args.calls)
            client_url = f"sqlite:///{tmp}/{name}-client.db"
            results[f"client_{name}"] = bench_client(client_url, durable, args.client_calls)
    for key, value in results.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for sub, figures in value.items():
                print(f"  {sub:22} {figures}")
        else:
            print(f"{key}: {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "record.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
