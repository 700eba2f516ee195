"""The dashboard: server-rendered pages at ``/`` of ``llmledger serve``, on the same reads as
the API (docs/dashboard.md). :func:`install` adds them to an app."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["install"]


def install(app: FastAPI) -> None:
    """Add the dashboard's pages, its login form and its static files (``/static``) to
    ``app``; a page asked for without a valid read key answers with the login form (401)."""
    from fastapi import Request
    from fastapi.responses import Response
    from starlette.staticfiles import StaticFiles

    from llmledger.web.access import LoginNeeded
    from llmledger.web.plan_pages import pages as plan_pages
    from llmledger.web.routes import router
    from llmledger.web.views import STATIC, render

    async def login_needed(request: Request, exc: Exception) -> Response:
        detail = exc.detail if isinstance(exc, LoginNeeded) else str(exc)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = render(request, "login.html", "", status_code=401, next=here, detail=detail)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    app.include_router(router)
    app.include_router(plan_pages)  # budgets and forecast
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(LoginNeeded, login_needed)
