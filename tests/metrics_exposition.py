"""A stand-in for ``GET /metrics`` of ``llmledger serve`` (issue 16): every metric family and
label the issue fixes, in the Prometheus text format, with counters that grow by known amounts
on each scrape. The dashboard's queries are run against it through a real Prometheus; the names
and labels are the issue's, so the stand-in answers what the service answers.

    with StandInTarget() as target:      # http://127.0.0.1:PORT/metrics
        ...
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = [
    "CACHE_HIT_RATE",
    "ERROR_RATIO",
    "FAMILIES",
    "StandInTarget",
    "exposition",
    "referenced_metrics",
]

# (provider, model, source, agent): an empty agent is an unknown one.
_CLAUDE = ("anthropic", "claude-sonnet-4-5", "claude-code", "coder")
_GPT = ("openai", "gpt-4o", "api", "")
_ACME = ("acme", "acme-large-2", "api", "planner")
_KEYS = ("provider", "model", "source", "agent")

# What each scrape adds.
_TOKENS = {  # type -> per model
    _CLAUDE: {"input": 100, "cache_read": 700, "cache_write": 200, "output": 50},
    _GPT: {"input": 400, "cache_read": 100, "cache_write": 30, "output": 80},
    _ACME: {"input": 10, "cache_read": 0, "cache_write": 0, "output": 5},
}
_REASONING = {_CLAUDE: 20, _GPT: 30, _ACME: 0}
_CACHE_WRITE_TTL = {_CLAUDE: {"5m": 150, "1h": 50}, _GPT: {"unknown": 30}}
_COST = {_CLAUDE: ("computed", 0.05), _GPT: ("reported", 0.02)}
_COST_INCLUDED = (("anthropic", "claude-haiku-4-5", "claude-code", "reviewer"), 0.0)
_CALLS = {_CLAUDE: {"ok": 9, "error": 1}, _GPT: {"ok": 10, "error": 0}, _ACME: {"ok": 2}}
_UNPRICED = {("acme", "acme-large-2", "api"): 2}
_RUNS = {("task", "succeeded"): 3, ("task", "failed"): 1, ("workflow", "succeeded"): 1}
_INGEST_FAILURES = {"call": 1, "payload": 0}
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# route -> per-scrape observations (seconds)
_REQUESTS = {"/v1/calls": (0.004, 0.02, 0.03, 0.2), "/metrics": (0.008, 0.009)}

FAMILIES = {
    "llmledger_tokens_total",
    "llmledger_reasoning_tokens_total",
    "llmledger_cache_write_tokens_total",
    "llmledger_cost_usd_total",
    "llmledger_calls_total",
    "llmledger_unpriced_calls_total",
    "llmledger_runs_finished_total",
    "llmledger_ingest_failures_total",
    "llmledger_request_duration_seconds",
}

_input_side = sum(t["input"] + t["cache_read"] + t["cache_write"] for t in _TOKENS.values())
CACHE_HIT_RATE = sum(t["cache_read"] for t in _TOKENS.values()) / _input_side
"""Cache reads / (input + cache reads + cache writes) over every model, as the stand-in grows."""
ERROR_RATIO = sum(c.get("error", 0) for c in _CALLS.values()) / sum(
    sum(c.values()) for c in _CALLS.values()
)
"""Error calls / all calls, as the stand-in grows."""


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _counter(lines: list[str], name: str, help_text: str, rows: list[tuple[str, float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines += [f"{name}{labels} {value!r}" for labels, value in rows]


def exposition(n: int) -> str:
    """The exposition after ``n`` scrapes: every counter is ``n`` times its per-scrape amount."""
    lines: list[str] = []
    _counter(
        lines,
        "llmledger_tokens_total",
        "Tokens by non-overlapping bucket.",
        [
            (_labels(type=kind, **dict(zip(_KEYS, key, strict=True))), float(n * amount))
            for key, by_type in _TOKENS.items()
            for kind, amount in by_type.items()
        ],
    )
    _counter(
        lines,
        "llmledger_reasoning_tokens_total",
        "Reasoning tokens (part of output).",
        [
            (_labels(**dict(zip(_KEYS, k, strict=True))), float(n * v))
            for k, v in _REASONING.items()
        ],
    )
    _counter(
        lines,
        "llmledger_cache_write_tokens_total",
        "Cache-write tokens by TTL.",
        [
            (_labels(ttl=ttl, **dict(zip(_KEYS, key, strict=True))), float(n * amount))
            for key, by_ttl in _CACHE_WRITE_TTL.items()
            for ttl, amount in by_ttl.items()
        ],
    )
    cost_rows = [
        (_labels(**dict(zip(_KEYS, key, strict=True)), cost_status=status), n * amount)
        for key, (status, amount) in _COST.items()
    ]
    included_key, included = _COST_INCLUDED
    cost_rows.append(
        (_labels(**dict(zip(_KEYS, included_key, strict=True)), cost_status="included"), included)
    )
    _counter(lines, "llmledger_cost_usd_total", "Cost in USD.", cost_rows)
    _counter(
        lines,
        "llmledger_calls_total",
        "Model calls by status.",
        [
            (_labels(**dict(zip(_KEYS, key, strict=True)), status=status), float(n * amount))
            for key, by_status in _CALLS.items()
            for status, amount in by_status.items()
        ],
    )
    _counter(
        lines,
        "llmledger_unpriced_calls_total",
        "Calls without a price.",
        [
            (_labels(**dict(zip(("provider", "model", "source"), k, strict=True))), float(n * v))
            for k, v in _UNPRICED.items()
        ],
    )
    _counter(
        lines,
        "llmledger_runs_finished_total",
        "Runs that ended.",
        [(_labels(kind=k, status=s), float(n * v)) for (k, s), v in _RUNS.items()],
    )
    _counter(
        lines,
        "llmledger_ingest_failures_total",
        "Rejected ingest requests.",
        [(_labels(reason=r), float(n * v)) for r, v in _INGEST_FAILURES.items()],
    )
    lines += [
        "# HELP llmledger_request_duration_seconds The service's request duration.",
        "# TYPE llmledger_request_duration_seconds histogram",
    ]
    for route, observations in _REQUESTS.items():
        for bound in (*_BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else repr(bound)
            count = n * sum(1 for o in observations if o <= bound)
            lines.append(
                f"llmledger_request_duration_seconds_bucket{_labels(route=route, le=le)} {count}"
            )
        by_route = _labels(route=route)
        lines.append(f"llmledger_request_duration_seconds_sum{by_route} {n * sum(observations)!r}")
        lines.append(f"llmledger_request_duration_seconds_count{by_route} {n * len(observations)}")
    return "\n".join(lines) + "\n"


def referenced_metrics(text: str) -> set[str]:
    """The llmledger metric names in a query, a rule file or a dashboard, histograms by their
    family name (``_bucket``, ``_sum`` and ``_count`` removed)."""
    names = set(re.findall(r"\bllmledger_[a-z_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        with self.server.lock:
            self.server.scrapes += 1
            body = exposition(self.server.scrapes).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test's output is the queries'."""


class _Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.scrapes = 0


class StandInTarget:
    """The stand-in, served on a free 127.0.0.1 port in a thread."""

    def __init__(self) -> None:
        self._server = _Server()
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StandInTarget:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
