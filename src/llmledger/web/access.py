"""Who may read the dashboard: the API's own rule (:func:`llmledger.api.auth.require` with the
``read`` scope), fed a key from the ``Authorization`` header or from the dashboard's cookie.

A browser cannot send a bearer header from a link, so ``POST /login`` takes a read key from a
form, checks it with that same rule and keeps it in an HttpOnly, SameSite=Strict cookie (Secure
over HTTPS). The key never travels in a URL, so it stays out of access logs and history. On a
service with no active key (a new loopback service) or started with ``--no-auth``, every page
is open, exactly as the API's reads are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from llmledger.api.auth import require

__all__ = ["COOKIE", "LoginNeeded", "check_key", "read_access"]

#: The cookie that holds a browser's read key.
COOKIE = "llmledger_key"

_bearer = HTTPBearer(auto_error=False)
_read = require("read")


class LoginNeeded(Exception):
    """The page needs a read key: answered with the login form (401)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def check_key(request: Request, key: str | None) -> None:
    """The API's read check on ``key`` (None: no key): returns when allowed, raises
    :class:`LoginNeeded` for a missing or invalid key, ``HTTPException(403)`` for a key of
    another scope."""
    credentials = (
        None if not key else HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    )
    try:
        _read(request, credentials)
    except HTTPException as exc:
        if exc.status_code == 401:
            raise LoginNeeded(str(exc.detail)) from None
        raise


def read_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """A page dependency: the bearer header if sent, else the dashboard's cookie."""
    key = credentials.credentials if credentials else request.cookies.get(COOKIE)
    check_key(request, key)
