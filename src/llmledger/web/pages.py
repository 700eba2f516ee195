"""The dashboard's pages, listed once: the navigation bar is drawn from :data:`PAGES`, so a new
page (budgets, forecast) is a route in :mod:`llmledger.web.routes` and a line here."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAGES", "Page"]


@dataclass(frozen=True, slots=True)
class Page:
    """A page of the navigation bar: its route name, path and title."""

    name: str
    path: str
    title: str


#: The navigation bar, in order.
PAGES: tuple[Page, ...] = (
    Page("overview", "/", "Overview"),
    Page("runs", "/runs", "Runs"),
    Page("models", "/models", "Models and prices"),
    Page("budgets", "/budgets", "Budgets"),
    Page("forecast", "/forecast", "Forecast"),
)
