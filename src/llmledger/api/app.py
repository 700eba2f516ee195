"""The FastAPI application: one store and one pricer per app.

The store is opened (and migrated) on first use rather than when the app is built, so a
service started while its database is down answers 503 until the database is back, then
serves as usual.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from pydantic import BaseModel

from llmledger.api.errors import (
    MAX_BODY_BYTES,
    BodyLimit,
    error_responses,
    install_error_handlers,
)
from llmledger.errors import StoreError

if TYPE_CHECKING:
    from llmledger.pricing import Pricer
    from llmledger.store import Repository

__all__ = ["Health", "Store", "app_from_env", "create_app", "pricer", "repository"]


class Store:
    """The ledger a service writes to, opened on first use; an open that fails is tried again
    by the next request."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self._repo: Repository | None = None
        self._lock = threading.Lock()

    def repository(self) -> Repository:
        """The open store; raises :class:`StoreError` (answered 503) when it cannot be opened."""
        repo = self._repo
        if repo is None:
            from llmledger.store import open_repository

            with self._lock:
                if self._repo is None:
                    self._repo = open_repository(self.url)
                repo = self._repo
        return repo

    def close(self) -> None:
        """Release the store's connections."""
        with self._lock:
            if self._repo is not None:
                self._repo.engine.dispose()
                self._repo = None


class Health(BaseModel):
    """``GET /healthz``: the service answers and its store is reachable."""

    status: str
    revision: str | None


def create_app(
    db: str | None = None, *, no_auth: bool = False, pricer: Pricer | None = None
) -> FastAPI:
    """The service's app on the ledger ``db`` (a store URL; default: ``LLMLEDGER_DB``, else
    the SQLite file in the user data directory). With ``no_auth`` every request is allowed;
    else requests need a key with the route's scope once any active key exists. ``pricer``
    prices posted calls (default: the prices in effect, overrides file included)."""
    from llmledger import web
    from llmledger.api import ingest, metrics, otlp, reads, reads_plan
    from llmledger.pricing import Pricer

    store = Store(db)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="llmledger",
        version=_version(),
        description=(
            "The ledger as a service: idempotent writes of runs, calls and task status "
            "events; reads that return the CLI's `--json` documents. Send "
            "`Authorization: Bearer <key>` once keys exist (`llmledger keys create`)."
        ),
        lifespan=lifespan,
        responses=error_responses(503),
    )
    app.state.store = store
    app.state.no_auth = no_auth
    app.state.pricer = pricer or Pricer()
    app.state.metrics = metrics.Metrics(store)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(metrics.RequestTimer, metrics=app.state.metrics)
    app.add_api_route(
        "/healthz",
        _healthz,
        methods=["GET"],
        response_model=Health,
        summary="Liveness and the store's schema revision",
        tags=["service"],
    )
    app.include_router(ingest.router)
    app.include_router(reads.router)
    app.include_router(reads_plan.router)  # budgets and forecasts (docs/service.md)
    app.include_router(metrics.router)
    app.include_router(otlp.router)
    web.install(app)  # the dashboard's pages at / (docs/dashboard.md)
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory llmledger.api.app:app_from_env`` (what ``llmledger
    serve --workers N`` runs in each worker): the store from ``LLMLEDGER_DB``, no key checks
    when ``LLMLEDGER_NO_AUTH=1``."""
    return create_app(
        os.environ.get("LLMLEDGER_DB") or None,
        no_auth=os.environ.get("LLMLEDGER_NO_AUTH", "") == "1",
    )


def repository(request: Request) -> Repository:
    """The app's store (a FastAPI dependency); a store that cannot be opened is a 503."""
    store: Store = request.app.state.store
    return store.repository()


def pricer(request: Request) -> Pricer:
    """The app's pricer (a FastAPI dependency)."""
    value: Pricer = request.app.state.pricer
    return value


def _healthz(request: Request) -> Health:
    """200 with the store's schema revision when the store answers; 503 when it does not."""
    from llmledger.store import current_revision

    repo = repository(request)
    revision = current_revision(repo.engine)
    if revision is None:
        raise StoreError("the ledger's tables are gone (no schema revision)")
    return Health(status="ok", revision=revision)


def _version() -> str:
    from llmledger import __version__

    return __version__
