"""API keys on requests: ``Authorization: Bearer llk_...`` and the scope a route needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import Request

__all__ = ["require"]

Scope = Literal["ingest", "read", "admin"]


def require(scope: Scope) -> Callable[[Request], None]:
    """A dependency that lets a request through when its key has ``scope`` (or admin):
    401 without a valid key, 403 with a key of another scope."""

    def check(request: Request) -> None:
        return None  # TODO(issue 15): checked against llmledger.keys

    return check
