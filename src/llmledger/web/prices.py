"""The models page's price sources: per model, how its calls' costs were settled —
``reported`` by the source, ``computed`` from which price data (``genai-prices x.y`` or an
overrides file, ``overrides:<sha8>``), ``included`` by an override, or ``unpriced``.

No API read answers this yet, so it is one ``GROUP BY`` here, over the same calls (and the same
``WHERE`` clause, :func:`~llmledger.reports.filters.calls_where`) as the reports; the tokens and
costs per model on the page come from the API's tokens report.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from llmledger.reports.filters import Filters, calls_where
from llmledger.store.sqlite_reader import Reader
from llmledger.values import datetime_to_micros, money_from_pico

__all__ = ["PriceSource", "price_sources"]


@dataclass(frozen=True, slots=True)
class PriceSource:
    """The calls of one model whose cost was settled one way."""

    model: str | None
    cost_status: str
    price_version: str | None
    calls: int
    cost_usd: Decimal | None

    @property
    def label(self) -> str:
        """``reported``, ``computed (genai-prices 0.2.3)``, ``override (overrides:ab12cd34)``,
        ``included (overrides:...)`` or ``unpriced``."""
        version = self.price_version
        if self.cost_status == "computed" and version and version.startswith("overrides:"):
            return f"override ({version})"
        if version and self.cost_status in ("computed", "included"):
            return f"{self.cost_status} ({version})"
        return self.cost_status


def price_sources(reader: Reader, filters: Filters) -> list[PriceSource]:
    """Per (model, cost status, price-data version): the calls and their known cost, the
    most calls first."""
    since = None if filters.since is None else datetime_to_micros(filters.since)
    until = None if filters.until is None else datetime_to_micros(filters.until)
    where, params = calls_where(filters, since, until)
    rows = reader.fetch(
        "SELECT model, cost_status, price_version, COUNT(*), SUM(cost_usd) FROM calls "
        f"{where} GROUP BY model, cost_status, price_version",
        params,
    )
    found = [
        PriceSource(model, status, version, int(count), money_from_pico(cost))
        for model, status, version, count, cost in rows
    ]
    return sorted(found, key=lambda s: (-s.calls, str(s.model), s.cost_status))
