"""``GET /metrics``: the ledger's counters, read from the store at scrape time.

The call families (:data:`llmledger.metrics.FAMILIES`) are summed from ``call_metrics``
(migration 0007), call totals per label set kept exact by triggers on ``calls``
(``store/metrics_rollup.py``); finished runs are one ``GROUP BY`` on ``runs`` (by its status
index). They therefore count every writer (imports, other processes, other machines, every
worker of this server) and never go back across a restart, and a scrape reads as many rows
as there are label sets, however many calls the ledger holds (``bench/bench_metrics.py``).
``call_rollup`` does not serve: it is keyed by (15-minute bucket, source, model) only,
without the provider, agent, status and cost status the labels need.

Two families are the server's own and start at zero with it, as any process's counters do
(with ``serve --workers N``, summed over the workers through prometheus-client's multiprocess
files): ``llmledger_ingest_failures_total{reason}`` (items of ``POST /v1/calls`` that were
rejected: ``payload`` for a payload no parser reads, ``call`` for a call record that fails
validation or the store's limits) and ``llmledger_request_duration_seconds{route}`` (the
route template, such as ``/v1/runs/{run_id}``, never the raw path).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

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
from llmledger.store.schema import TERMINAL_RUN_STATUSES, call_metrics, runs

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from llmledger.api.app import Store
    from llmledger.store import Repository

__all__ = ["LedgerCollector", "Metrics", "RequestTimer", "render", "router"]

router = APIRouter(tags=["service"])


class LedgerCollector(Collector):
    """A prometheus-client collector whose counters are the ledger's sums at scrape time."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def repository(self) -> Repository:
        """The store's repository (the budget gauges read it)."""
        return self._store.repository()

    def collect(self) -> Iterable[Metric]:
        """The call and run families, from ``call_metrics`` and ``runs``."""
        sums = self.sums()
        out = []
        for name, (doc, labels) in _LEDGER_FAMILIES.items():
            family = CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
            for key, value in sums[name].items():
                family.add_metric(key, _value(name, value))
            out.append(family)
        return out

    def sums(self) -> dict[str, dict[tuple[str, ...], Any]]:
        """Family name -> label values -> the ledger's sum (cost in pico-dollars)."""
        sums: dict[str, dict[tuple[str, ...], Any]] = {name: {} for name in _LEDGER_FAMILIES}
        engine = self._store.repository().engine
        with engine.connect() as conn:
            for family, labels, measures, where in _ledger_queries():
                for row in conn.execute(_family_query(labels, measures, where)):
                    key = tuple(row[: len(labels)])
                    for name, value in zip(family, row[len(labels) :], strict=True):
                        if value is not None:  # unknown is not zero: no sample
                            sums[name[0]][(*name[1:], *key)] = value
            for kind, status, count in conn.execute(_runs_query()):
                sums[RUNS_FINISHED][(kind, status)] = int(count)
        return sums


#: The families read from the ledger (all but this process's ingest failures).
_LEDGER_FAMILIES = {name: spec for name, spec in FAMILIES.items() if name != INGEST_FAILURES}


def _value(name: str, value: Any) -> float:
    """A sample's value: cost is summed in pico-dollars and exposed in dollars."""
    return float(Decimal(value).scaleb(-12)) if name == COST else float(value)


_WHO = ("provider", "model", "source", "agent")


def _ledger_queries() -> list[tuple[list[tuple[str, ...]], tuple[str, ...], list[str], Any]]:
    """Per query on ``call_metrics``: the (family, leading label values) each summed column
    goes to, the labels it groups by, the summed columns and which rows it reads. Each
    family's label set is one ``GROUP BY`` of the table's rows, summed by the database."""
    priced = call_metrics.c.cost_status.in_(COST_STATUSES)
    tokens = [*TOKEN_TYPES.values(), "reasoning_tokens"]
    ttls = {"5m": "cache_write_5m_tokens", "1h": "cache_write_1h_tokens"}
    ttls["unknown"] = "cache_write_unknown_tokens"
    return [
        (
            [
                *((TOKENS, kind) for kind in TOKEN_TYPES),
                (REASONING_TOKENS,),
                *((CACHE_WRITE_TOKENS, ttl) for ttl in ttls),
            ],
            _WHO,
            [*tokens, *ttls.values()],
            None,
        ),
        # Cost counts the priced calls; the unpriced are counted, never as zero dollars.
        ([(COST,)], (*_WHO, "cost_status"), ["cost_usd"], priced),
        ([(CALLS,)], (*_WHO, "status"), ["calls"], None),
        ([(UNPRICED_CALLS,)], ("provider", "model", "source"), ["calls"], ~priced),
    ]


def _family_query(labels: tuple[str, ...], measures: list[str], where: Any) -> Any:
    """The sums of ``measures`` per ``labels`` (None where no call knows the value)."""
    m = call_metrics.c
    keys = [m[name] for name in labels]
    # Cost is summed as a real number: SQLite's SUM of integers fails past 64 bits (about
    # $9.2M of pico-dollars in one series), and the sample is a float either way.
    sums = [
        func.sum(m.calls)
        if name == "calls"
        else case((func.sum(m[f"{name}_known"]) > 0, func.sum(_real(m, name))))
        for name in measures
    ]
    query = select(*keys, *sums).where(m.calls > 0).group_by(*keys)
    return query if where is None else query.where(where)


def _real(m: Any, name: str) -> Any:
    return m[name] * 1.0 if name == "cost_usd" else m[name]


def _runs_query() -> Any:
    return (
        select(runs.c.kind, runs.c.status, func.count())
        .where(runs.c.status.in_(sorted(TERMINAL_RUN_STATUSES)))
        .group_by(runs.c.kind, runs.c.status)
        .order_by(runs.c.kind, runs.c.status)
    )


class Metrics:
    """The metrics of one app: the ledger's collector, and this process's own counters in a
    registry of their own (two apps in one process do not share counters)."""

    def __init__(self, store: Store) -> None:
        self.ledger = LedgerCollector(store)
        self.registry = CollectorRegistry(auto_describe=False)
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

    def exposition(self) -> bytes:
        """Every family in the text format: the ledger's, its budgets' gauges (when it has
        budgets), then the server's own (summed over its workers when ``serve --workers N``
        set ``PROMETHEUS_MULTIPROC_DIR``)."""
        from llmledger.budgets.gauges import render_gauges

        own = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            own = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(own)  # type: ignore[no-untyped-call]
        gauges = render_gauges(self.ledger.repository())
        return render(self.ledger.sums()) + gauges + generate_latest(own)

    def rejected(self, errors: Iterable[str]) -> None:
        """Count the items of an ingest batch that were rejected (their error messages)."""
        for error in errors:
            self.ingest_failures.labels("payload" if error.startswith("payload") else "call").inc()


def render(sums: dict[str, dict[tuple[str, ...], Any]]) -> bytes:
    """The ledger's families (:meth:`LedgerCollector.sums`) in the text format (0.0.4), as
    ``generate_latest`` writes a :class:`LedgerCollector`, but written straight from the
    sums: on 5,000 label sets (13,600 samples) prometheus-client's metric objects and
    exposition took 0.3 s of a scrape whose query takes 20 ms. The label names are ours
    (known to be valid); each distinct label value is escaped once."""
    out: list[str] = []
    escaped: dict[str, str] = {}
    for name, (doc, labels) in _LEDGER_FAMILIES.items():
        out.append(f"# HELP {name} {_escape_help(doc)}\n# TYPE {name} counter\n")
        for key, value in sums[name].items():
            parts = []
            for label, text in zip(labels, key, strict=True):
                safe = escaped.get(text)
                if safe is None:
                    safe = escaped[text] = _escape_value(text)
                parts.append(f'{label}="{safe}"')
            out.append(f"{name}{{{','.join(parts)}}} {_value(name, value)!r}\n")
    return "".join(out).encode()


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


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
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


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
