"""The FastAPI application: one store per app, opened when the app starts."""

from __future__ import annotations

from fastapi import FastAPI, Request

from llmledger.store import Repository, open_repository

__all__ = ["create_app", "repository"]


def create_app(db: str | None = None, *, no_auth: bool = False) -> FastAPI:
    """The service's app on the ledger ``db`` (a store URL; default: ``LLMLEDGER_DB``, else
    the SQLite file in the user data directory). With ``no_auth`` every request is allowed."""
    from llmledger.api import ingest, reads

    app = FastAPI(title="llmledger", version=_version())
    app.state.repo = open_repository(db)
    app.state.no_auth = no_auth
    app.include_router(ingest.router)
    app.include_router(reads.router)
    return app


def repository(request: Request) -> Repository:
    """The app's store (a FastAPI dependency)."""
    repo: Repository = request.app.state.repo
    return repo


def _version() -> str:
    from llmledger import __version__

    return __version__
