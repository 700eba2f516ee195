"""How a page is answered: the Jinja2 environment (templates beside this module, autoescaped),
the filters that print numbers as the CLI does (unknown is ``-``, never 0), and the downloads
every page offers — the API's JSON document as it is, or its main table as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from llmledger.display import format_money, format_tokens
from llmledger.web.pages import PAGES

__all__ = ["csv_response", "json_response", "query_string", "render"]

_HERE = Path(__file__).resolve().parent
TEMPLATES = _HERE / "templates"
STATIC = _HERE / "static"


def _money(value: float | Decimal | None) -> str:
    if value is None:
        return "-"
    return format_money(value if isinstance(value, Decimal) else Decimal(repr(value)))


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _when(value: str | datetime | None) -> str:
    """An ISO time to the second, without its zone offset (shown once on the page)."""
    if value is None:
        return "-"
    text = value.isoformat() if isinstance(value, datetime) else value
    return text[:19].replace("T", " ")


def _name(value: object) -> str:
    return "(none)" if value is None or value == "" else str(value)


_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    tokens=format_tokens, money=_money, percent=_percent, duration=_duration, when=_when, name=_name
)


def query_string(params: Mapping[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` of ``params`` with ``changes`` applied (None or '' drops a parameter; a
    list repeats it), '' for none."""
    merged = {**params, **changes}
    pairs: list[tuple[str, str]] = []
    for name, value in merged.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs += [(name, str(v)) for v in values if v is not None and v != ""]
    return "?" + urlencode(pairs) if pairs else ""


_env.globals["qs"] = query_string


def render(
    request: Request, template: str, page: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """The page ``template`` with ``context``, the navigation bar (``page`` marked current)."""
    body = _env.get_template(template).render(
        pages=PAGES, current=page, path=request.url.path, **context
    )
    return HTMLResponse(body, status_code=status_code)


def json_response(document: Any, filename: str) -> Response:
    """``document`` (what the API returns for the page's question) as a JSON download."""
    from llmledger.api.reads import Document

    return Document(
        document, headers={"Content-Disposition": f'attachment; filename="{filename}.json"'}
    )


def csv_response(rows: Iterable[Mapping[str, Any]], filename: str) -> Response:
    """``rows`` as CSV (columns in first-seen order; None as an empty cell), a download."""
    materialized = list(rows)
    columns: dict[str, None] = {}
    for row in materialized:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in materialized:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


def _cell(value: Any) -> Any:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " ".join(str(v) for v in value)
    return "" if value is None else value
