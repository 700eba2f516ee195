"""API keys on requests: ``Authorization: Bearer llk_...`` and the scope a route needs.

Keys are demanded once the ledger holds an active key (asked on every request, so a key
created or revoked with ``llmledger keys`` counts at once, in every worker) and the app was
not built with ``no_auth``. Until then every request is let through: a new loopback service
works before its first key exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmledger import keys
from llmledger.api.app import repository
from llmledger.keys import Scope

__all__ = ["Scope", "require"]

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `llmledger keys create NAME --scope ingest|read|admin`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require(scope: Scope) -> Callable[..., None]:
    """A dependency that lets a request through when its key has ``scope`` (or admin):
    401 without a valid key, 403 with a key of another scope."""

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if request.app.state.no_auth:
            return
        repo = repository(request)
        info = keys.verify_key(repo, credentials.credentials) if credentials else None
        if info is None:
            if not keys.has_active_keys(repo):
                return
            detail = (
                "invalid or revoked API key"
                if credentials
                else "an API key is required: send Authorization: Bearer <key>"
            )
            raise HTTPException(401, detail, headers=_CHALLENGE)
        if not keys.grants(info.scope, scope):
            raise HTTPException(
                403, f"the key {info.name!r} has scope {info.scope!r}; this needs {scope!r}"
            )

    return check
