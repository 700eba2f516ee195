"""How the service answers what went wrong: a store outage is 503 with ``Retry-After`` (the
client backs off and retries), a body over the limit 413, a conflict 409, an unknown run 404,
bad input 422 in FastAPI's shape; never a 500 for bad input.

Every error body is JSON with a ``detail``: a string, or for 422 FastAPI's list of
``{"loc", "msg", "type"}`` that names the field.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmledger.errors import ConflictError, StoreError, UsageError

__all__ = [
    "MAX_BODY_BYTES",
    "RETRY_AFTER_SECONDS",
    "BodyLimit",
    "ErrorBody",
    "error_responses",
    "install_error_handlers",
    "store_unavailable",
    "unprocessable",
]

_log = logging.getLogger("llmledger.api")

#: The largest request body the service reads (16 MiB); a larger one is answered 413.
MAX_BODY_BYTES = 16 * 1024 * 1024
#: What ``Retry-After`` says when the store is unreachable.
RETRY_AFTER_SECONDS = 2


class ErrorBody(BaseModel):
    """The body of an error other than a schema error: what went wrong, naming the field."""

    detail: str


_DESCRIPTIONS = {
    401: "No valid API key (send `Authorization: Bearer <key>`)",
    403: "The key's scope does not allow this",
    404: "Not found (the detail names the field)",
    409: "Conflicts with what is stored (the detail names the field)",
    413: "Body or batch over the limit",
    503: "The store is unreachable; retry after `Retry-After` seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error ``codes`` a route may answer."""
    return {code: {"model": ErrorBody, "description": _DESCRIPTIONS[code]} for code in codes}


def unprocessable(field: str, message: str, where: str = "body") -> JSONResponse:
    """A 422 in FastAPI's shape for one field that the schema could not check."""
    return JSONResponse(
        {"detail": [{"type": "value_error", "loc": [where, field], "msg": message}]},
        status_code=422,
    )


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def store_unavailable(exc: BaseException) -> JSONResponse:
    """503 with ``Retry-After`` for a store that cannot be reached or opened."""
    _log.warning("the store is unavailable: %s: %s", type(exc).__name__, exc)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return _json(
        503,
        f"the ledger's store is unavailable, retry later ({first[:300]})",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _on_store_error(request: Request, exc: Exception) -> JSONResponse:
    return store_unavailable(exc)


async def _on_database_error(request: Request, exc: Exception) -> JSONResponse:
    # Input is checked before it reaches the store, so a refused write is the store's state
    # (a constraint a concurrent writer won), and anything else an outage. SQLAlchemy's
    # wrappers and the drivers' own errors (the bulk writes use the DB-API cursor) alike,
    # by their PEP 249 class.
    kinds = {cls.__name__ for cls in type(getattr(exc, "orig", None) or exc).__mro__}
    if "IntegrityError" in kinds:
        return _json(409, f"the store refused the write: {_first_line(exc)}")
    if "DataError" in kinds:
        return unprocessable("body", f"the store refused a value: {_first_line(exc)}", "store")
    return store_unavailable(exc)


async def _on_conflict(request: Request, exc: Exception) -> JSONResponse:
    return _json(409, str(exc))


async def _on_usage_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UsageError)
    message = str(exc).removeprefix(f"{exc.field}: ")
    return unprocessable(exc.field, message)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.splitlines()[0][:300] if text else type(exc).__name__


def install_error_handlers(app: FastAPI) -> None:
    """Map the store's and the ledger's exceptions to their HTTP answers on ``app``."""
    app.add_exception_handler(StoreError, _on_store_error)
    app.add_exception_handler(PoolTimeoutError, _on_store_error)
    app.add_exception_handler(DBAPIError, _on_database_error)
    app.add_exception_handler(sqlite3.Error, _on_database_error)
    app.add_exception_handler(psycopg.Error, _on_database_error)
    app.add_exception_handler(SQLAlchemyError, _on_store_error)
    app.add_exception_handler(ConflictError, _on_conflict)
    app.add_exception_handler(UsageError, _on_usage_error)


class BodyLimit:
    """Answers 413 (JSON, like every error) to a request whose body is over ``max_bytes``: at
    once, unread, when its ``Content-Length`` says so; else when the streamed body passes the
    limit (an HTTPException raised while the route reads it)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body is over the limit of {self.max_bytes} bytes"
        if _content_length(scope) > self.max_bytes:
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
