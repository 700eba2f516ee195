"""Prometheus metrics: the families' names and labels, and :class:`PrometheusObserver`.

The families are fixed (dashboards and alert rules are written against them). ``llmledger
serve`` serves them at ``GET /metrics`` from the ledger itself (``llmledger.api.metrics``), so
that they count every writer; :class:`PrometheusObserver` counts the same families in-process
for an app that records through a :class:`~llmledger.ledger.Ledger` without the server.

Labels never hold run, task, session or user ids; a value that is not known is ``""``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

if TYPE_CHECKING:
    from llmledger.call import Call
    from llmledger.ledger import Run
    from llmledger.pricing import Price
    from llmledger.store.schema import TerminalRunStatus
    from llmledger.totals import Totals

__all__ = [
    "CACHE_WRITE_TOKENS",
    "CALLS",
    "CALL_LABELS",
    "COST",
    "COST_STATUSES",
    "FAMILIES",
    "INGEST_FAILURES",
    "REASONING_TOKENS",
    "RECORD_DURATION",
    "REQUEST_DURATION",
    "RUNS_FINISHED",
    "TOKENS",
    "TOKEN_TYPES",
    "UNPRICED_CALLS",
    "PrometheusObserver",
]

#: The labels that say who made a call.
CALL_LABELS = ("provider", "model", "source", "agent")
#: ``type`` of ``llmledger_tokens_total`` -> the ``Usage`` bucket it counts. The buckets do
#: not overlap: summing over ``type`` gives every token.
TOKEN_TYPES = {
    "input": "input_tokens",
    "cache_read": "cache_read_tokens",
    "cache_write": "cache_write_tokens",
    "output": "output_tokens",
}
#: The cost statuses that carry a cost (an ``unpriced`` call has none: it is counted by
#: ``llmledger_unpriced_calls_total``, never as zero dollars).
COST_STATUSES = ("reported", "computed", "included")

# Family name (as exposed, with ``_total`` for counters) -> (help, labels).
TOKENS = "llmledger_tokens_total"
REASONING_TOKENS = "llmledger_reasoning_tokens_total"
CACHE_WRITE_TOKENS = "llmledger_cache_write_tokens_total"
COST = "llmledger_cost_usd_total"
CALLS = "llmledger_calls_total"
UNPRICED_CALLS = "llmledger_unpriced_calls_total"
RUNS_FINISHED = "llmledger_runs_finished_total"
INGEST_FAILURES = "llmledger_ingest_failures_total"
REQUEST_DURATION = "llmledger_request_duration_seconds"
RECORD_DURATION = "llmledger_record_duration_seconds"

#: The counter families shared by ``/metrics`` and :class:`PrometheusObserver`:
#: name -> (help text, label names).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    TOKENS: (
        "Tokens of recorded calls by non-overlapping type (input, cache_read, cache_write, "
        "output); the sum over type is every token.",
        ("type", *CALL_LABELS),
    ),
    REASONING_TOKENS: (
        "Reasoning tokens of recorded calls (a part of their output tokens).",
        CALL_LABELS,
    ),
    CACHE_WRITE_TOKENS: (
        "Cache-write tokens by cache lifetime (ttl 5m, 1h, or unknown where the source does "
        "not say).",
        ("ttl", *CALL_LABELS),
    ),
    COST: (
        "Cost in USD of priced calls, by how the cost is known (reported by the source, "
        "computed from prices, or included in a plan).",
        (*CALL_LABELS, "cost_status"),
    ),
    CALLS: ("Recorded model calls by status (ok or error).", (*CALL_LABELS, "status")),
    UNPRICED_CALLS: (
        "Calls no price is known for: spend that no cost counter shows.",
        ("provider", "model", "source"),
    ),
    RUNS_FINISHED: ("Runs that reached a terminal status.", ("kind", "status")),
    INGEST_FAILURES: ("Items or records that could not be stored, by reason.", ("reason",)),
}


def _base(name: str) -> str:
    """The name prometheus-client takes for a counter (it adds ``_total`` itself)."""
    return name.removesuffix("_total")


class PrometheusObserver:
    """A :class:`~llmledger.ledger.LedgerObserver` that counts what a ``Ledger`` records in
    the families of ``GET /metrics`` (:data:`FAMILIES`), in ``registry`` (default:
    prometheus-client's global one, which ``prometheus_client.start_http_server`` serves),
    plus ``llmledger_record_duration_seconds``, the time ``Ledger.record()`` takes.

    ``Ledger(observers=[PrometheusObserver()])``. It counts the calls of this process from
    the moment it is attached (the server's ``/metrics`` counts the whole ledger).
    ``llmledger_ingest_failures_total{reason}`` counts the ledger's failures by what failed
    (``record``, ``finalize``, ...).
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        def counter(name: str) -> Counter:
            doc, labels = FAMILIES[name]
            return Counter(_base(name), doc, labels, registry=registry)

        self.tokens = counter(TOKENS)
        self.reasoning_tokens = counter(REASONING_TOKENS)
        self.cache_write_tokens = counter(CACHE_WRITE_TOKENS)
        self.cost = counter(COST)
        self.calls = counter(CALLS)
        self.unpriced_calls = counter(UNPRICED_CALLS)
        self.runs_finished = counter(RUNS_FINISHED)
        self.ingest_failures = counter(INGEST_FAILURES)
        self.record_duration = Histogram(
            RECORD_DURATION,
            "Time Ledger.record() takes, from the payload to the stored calls.",
            registry=registry,
        )

    def on_record(self, call: Call, price: Price, run: Run | None) -> None:
        """Count one recorded call: its tokens, cost, status and, when unpriced, the call."""
        who = (call.provider or "", call.model or "", call.source or "", call.agent_id or "")
        usage = call.usage
        for kind, bucket in TOKEN_TYPES.items():
            count = getattr(usage, bucket)
            if count is not None:  # unknown is not zero: no sample, not a zero
                self.tokens.labels(kind, *who).inc(count)
        if usage.reasoning_tokens is not None:
            self.reasoning_tokens.labels(*who).inc(usage.reasoning_tokens)
        for ttl, count in _cache_writes(
            usage.cache_write_tokens, usage.cache_write_5m_tokens, usage.cache_write_1h_tokens
        ).items():
            self.cache_write_tokens.labels(ttl, *who).inc(count)
        if price.cost_status == "unpriced" or price.cost_usd is None:
            self.unpriced_calls.labels(*who[:3]).inc()
        else:
            self.cost.labels(*who, price.cost_status).inc(float(price.cost_usd))
        self.calls.labels(*who, call.status).inc()

    def on_finalize(self, run: Run, status: TerminalRunStatus, totals: Totals | None) -> None:
        """Count a finished run by kind and status."""
        self.runs_finished.labels(run.kind, status).inc()

    def on_failure(self, error: BaseException, what: str) -> None:
        """Count a failure of the ledger by what failed."""
        self.ingest_failures.labels(what).inc()

    def on_record_duration(self, seconds: float) -> None:
        """Observe how long one ``Ledger.record()`` took (the ledger calls this after it)."""
        self.record_duration.observe(seconds)


def _cache_writes(total: int | None, five: int | None, hour: int | None) -> dict[str, int]:
    """One call's cache writes by ttl: the 5m and 1h parts where known, the rest of the
    total as ``unknown``."""
    out: dict[str, int] = {}
    if five is not None:
        out["5m"] = five
    if hour is not None:
        out["1h"] = hour
    if total is not None:
        out["unknown"] = total - (five or 0) - (hour or 0)
    return out
