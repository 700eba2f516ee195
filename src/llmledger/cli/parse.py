"""``llmledger parse FILE``: the calls and normalized usage a payload file holds, priced."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from llmledger.call import Call
from llmledger.cli._app import IgnoreOverridesOption, JsonOption, app, echo_json, load_pricer
from llmledger.display import safe_text
from llmledger.errors import LedgerError
from llmledger.payloads import price_calls
from llmledger.pricing import Price
from llmledger.sources import FORMATS, Parsed, parse_file
from llmledger.usage import BUCKETS

_COLUMNS = (
    ("input_tokens", "input"),
    ("cache_read_tokens", "cache read"),
    ("cache_write_tokens", "cache write"),
    ("output_tokens", "output"),
    ("reasoning_tokens", "reasoning"),
    ("total_tokens", "total"),
)


def _money(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def _call_json(call: Call, price: Price) -> dict[str, Any]:
    out: dict[str, Any] = dict(call.usage.to_dict())
    out.update(
        model=call.model,
        provider=call.provider,
        cost_usd=_money(price.cost_usd),
        cost_status=price.cost_status,
    )
    return out


def _totals(prices: list[Price]) -> tuple[Decimal | None, int]:
    known = [p.cost_usd for p in prices if p.cost_usd is not None]
    unpriced = sum(1 for p in prices if p.cost_status == "unpriced")
    return (sum(known, Decimal(0)) if known else None), unpriced


def _fmt(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _table(parsed: Parsed, prices: list[Price], path: Path) -> Table:
    table = Table(title=f"{safe_text(path.name)} · {safe_text(parsed.format)}", show_footer=True)
    usage = parsed.usage
    cost, unpriced = _totals(prices)
    table.add_column("model", footer=f"{len(parsed.calls)} calls")
    totals = usage.to_dict()
    for key, label in _COLUMNS:
        table.add_column(label, justify="right", footer=_fmt(totals[key]))
    cost_footer = "—" if cost is None else f"${cost:.6f}"
    if unpriced:
        cost_footer += f" (+{unpriced} unpriced)"
    table.add_column("cost (USD)", justify="right", footer=cost_footer)
    table.add_column("status")
    for call, price in zip(parsed.calls, prices, strict=True):
        row = call.usage.to_dict()
        cost_text = "—" if price.cost_usd is None else f"${price.cost_usd:.6f}"
        table.add_row(
            safe_text(call.model or "?"),
            *(_fmt(row[key]) for key, _ in _COLUMNS),
            cost_text,
            price.cost_status,
        )
    return table


@app.command("parse")
def parse_command(
    file: Annotated[Path, typer.Argument(help="A usage payload: JSON or JSON lines.")],
    format: Annotated[
        str,
        typer.Option("--format", "-f", help=f"auto, or one of: {', '.join(FORMATS)}."),
    ] = "auto",
    as_json: JsonOption = False,
    ignore_overrides: IgnoreOverridesOption = False,
) -> None:
    """Parse a usage payload file and show its calls, normalized usage and cost."""
    pricer = load_pricer(None, ignore_overrides)
    try:
        parsed = parse_file(file, format=None if format == "auto" else format)
        reported = parsed.summary.reported_cost_by_model if parsed.summary is not None else {}
        prices = price_calls(pricer, parsed.calls, reported)
    except LedgerError as exc:  # ParseError
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        usage = parsed.usage
        cost, unpriced = _totals(prices)
        totals: dict[str, Any] = {name: getattr(usage, name) for name in BUCKETS}
        totals.update(
            total_tokens=usage.total_tokens, cost_usd=_money(cost), unpriced_calls=unpriced
        )
        doc = {
            "format": parsed.format,
            "calls": [_call_json(c, p) for c, p in zip(parsed.calls, prices, strict=True)],
            "totals": totals,
            "skipped": [
                {"line": s.line, "kind": s.reason, "reason": s.message} for s in parsed.skipped
            ],
        }
        echo_json(doc)
        return
    console = Console()
    console.print(_table(parsed, prices, file))
    for warning in parsed.warnings:
        console.print(f"[yellow]warning:[/] {safe_text(warning)}")
    for skip in parsed.skipped:
        where = f"{file}:{skip.line}" if skip.line else str(file)
        console.print(f"[yellow]skipped:[/] {safe_text(f'{where}: {skip.message}')}")
