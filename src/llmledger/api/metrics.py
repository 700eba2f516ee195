"""``GET /metrics``: the ledger's counters, read from the store at scrape time.

The call and run families (:data:`llmledger.metrics.FAMILIES`) are sums over the ``calls``
and ``runs`` tables, worked out at each scrape by one ``GROUP BY`` per table. They therefore
count every writer (imports, other processes, other machines, every worker of this server)
and never go back across a restart. ``call_rollup`` is not used: it is keyed by (15-minute
bucket, source, model) only, without the provider, agent, status and cost status the labels
need; the ``GROUP BY`` on ``calls`` reads every call, which ``bench/bench_metrics.py``
measures (docs/observability.md gives the figure).

Two families are this process's own and start at zero with it, as any process's counters
do: ``llmledger_ingest_failures_total{reason}`` (items of ``POST /v1/calls`` that were
rejected: ``payload`` for a payload no parser reads, ``call`` for a call record that fails
validation or the store's limits) and ``llmledger_request_duration_seconds{route}`` (the
route template, such as ``/v1/runs/{run_id}``, never the raw path).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, literal, select

from llmledger.api.auth import require
from llmledger.metrics import (
    CACHE_WRITE_TOKENS,
    CALLS,
    COST,
    COST_STATUSES,
    FAMILIES,
    INGEST_FAILURES,
    REASONING_TOKENS,
    REQUEST_DURATION,
    RUNS_FINISHED,
    TOKEN_TYPES,
    TOKENS,
    UNPRICED_CALLS,
)
from llmledger.store.schema import TERMINAL_RUN_STATUSES, calls, runs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from llmledger.api.app import Store

__all__ = ["LedgerCollector", "Metrics", "RequestTimer", "router"]

router = APIRouter(tags=["service"])


class LedgerCollector(Collector):
    """A prometheus-client collector whose counters are the ledger's sums at scrape time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        """The call and run families, from two ``GROUP BY`` queries on the store."""
        families = {
            name: CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
            for name, (doc, labels) in FAMILIES.items()
            if name != INGEST_FAILURES
        }
        engine = self._store.repository().engine
        with engine.connect() as conn:
            call_rows = conn.execute(_calls_query()).all()
            run_rows = conn.execute(_runs_query()).all()
        unpriced: dict[tuple[str, str, str], int] = {}
        for row in call_rows:
            _add_calls(families, row, unpriced)
        for key, count in sorted(unpriced.items()):
            families[UNPRICED_CALLS].add_metric(key, count)
        for kind, status, count in run_rows:
            families[RUNS_FINISHED].add_metric((kind, status), count)
        return list(families.values())


def _calls_query() -> Any:
    """Per (provider, model, source, agent, status, cost status): the number of calls and the
    sums of their token buckets and cost (None where no call knows the value)."""
    c = calls.c
    five, hour = c.cache_write_5m_tokens, c.cache_write_1h_tokens
    # A call's cache writes whose lifetime the source did not give (as in metrics._cache_writes).
    unknown_ttl = c.cache_write_tokens - func.coalesce(five, 0) - func.coalesce(hour, 0)
    keys = (
        func.coalesce(c.provider, literal("")),
        func.coalesce(c.model, literal("")),
        c.source,
        func.coalesce(c.agent_id, literal("")),
        c.status,
        c.cost_status,
    )
    # The sum of the stored integer pico-dollars (exact), read back as a Decimal.
    cost = func.sum(c.cost_usd)
    return (
        select(
            *keys,
            func.count(),
            *(func.sum(c[bucket]) for bucket in TOKEN_TYPES.values()),
            func.sum(c.reasoning_tokens),
            func.sum(five),
            func.sum(hour),
            func.sum(unknown_ttl),
            cost,
        )
        .group_by(*keys)
        .order_by(*keys)
    )


def _runs_query() -> Any:
    return (
        select(runs.c.kind, runs.c.status, func.count())
        .where(runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES)))
        .group_by(runs.c.kind, runs.c.status)
        .order_by(runs.c.kind, runs.c.status)
    )


def _add_calls(
    families: dict[str, CounterMetricFamily],
    row: Sequence[Any],
    unpriced: dict[tuple[str, str, str], int],
) -> None:
    provider, model, source, agent, status, cost_status, count = row[:7]
    tokens, (reasoning, five, hour, unknown, cost) = row[7:11], row[11:16]
    who = (provider, model, source, agent)
    for kind, value in zip(TOKEN_TYPES, tokens, strict=True):
        if value is not None:  # unknown is not zero: no sample
            families[TOKENS].add_metric((kind, *who), int(value))
    if reasoning is not None:
        families[REASONING_TOKENS].add_metric(who, int(reasoning))
    for ttl, value in (("5m", five), ("1h", hour), ("unknown", unknown)):
        if value is not None:
            families[CACHE_WRITE_TOKENS].add_metric((ttl, *who), int(value))
    if cost_status in COST_STATUSES and cost is not None:
        families[COST].add_metric((*who, cost_status), float(Decimal(cost)))
    elif cost_status == "unpriced":
        key = (provider, model, source)
        unpriced[key] = unpriced.get(key, 0) + int(count)
    families[CALLS].add_metric((*who, status), int(count))


class Metrics:
    """The metrics of one app: the ledger collector and this process's own counters, in a
    registry of their own (two apps in one process do not share counters)."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(LedgerCollector(store))
        doc, labels = FAMILIES[INGEST_FAILURES]
        self.ingest_failures = Counter(
            INGEST_FAILURES.removesuffix("_total"), doc, labels, registry=self.registry
        )
        self.request_duration = Histogram(
            REQUEST_DURATION,
            "Time the server took to answer a request, by route template.",
            ("route",),
            registry=self.registry,
        )

    def rejected(self, errors: Iterable[str]) -> None:
        """Count the items of an ingest batch that were rejected (their error messages)."""
        for error in errors:
            self.ingest_failures.labels("payload" if error.startswith("payload") else "call").inc()


class RequestTimer:
    """ASGI middleware: observes each HTTP request's duration under its route template
    (``""`` for a path no route matches)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request and observe its duration, whether or not it raised."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "") if route is not None else ""
            self.metrics.request_duration.labels(template).observe(time.perf_counter() - started)


def _scrape(request: Request) -> Response:
    """The metrics in Prometheus' text format."""
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


router.add_api_route(
    "/metrics",
    _scrape,
    methods=["GET"],
    summary="Prometheus metrics: the ledger's counters and the server's own",
    description=(
        "Counters read from the ledger at scrape time (tokens, cost, calls, unpriced calls, "
        "finished runs) and this process's ingest failures and request durations. Needs a "
        "`read` key once keys exist."
    ),
    dependencies=[Depends(require("read"))],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format 0.0.4"}},
)
