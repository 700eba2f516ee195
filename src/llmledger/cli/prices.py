"""``llmledger prices MODEL``: the rates that would price a model, and where they come from."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmledger.cli._app import IgnoreOverridesOption, JsonOption, app, echo_json, load_pricer
from llmledger.display import plain_text, safe_text
from llmledger.pricing import PRICES_ENV, RateCard, Rates, default_overrides_path, toml_key

_LABELS = (
    ("input", "input"),
    ("output", "output"),
    ("cache_read", "cache read"),
    ("cache_write", "cache write (5m)"),
    ("cache_write_1h", "cache write (1h)"),
    ("reasoning", "reasoning (part of output)"),
)


def _card_json(card: RateCard, at: datetime) -> dict[str, Any]:
    def rates(r: Rates | None) -> dict[str, str] | None:
        return r.as_dict() if r is not None else None

    return {
        "model": card.model,
        "matched_model": card.matched_model,
        "provider": card.provider,
        "source": card.source,
        "price_version": card.price_version,
        "overrides_path": str(card.overrides_path) if card.overrides_path else None,
        "included": card.included,
        "at": at.isoformat(),
        "unit": "USD per million tokens (per_request: USD per request)",
        "rates": rates(card.rates),
        "tiers": [
            {"above_prompt_tokens": start, "rates": rates(tier)} for start, tier in card.tiers
        ],
        "note": card.note,
    }


def _unknown_hint(model: str, path: Path | None) -> str:
    checked = "the overrides file and " if path is not None else ""
    path = path or default_overrides_path()
    return (
        f"no price known for model {model!r} (checked {checked}genai-prices' "
        f"bundled data).\nIts calls are recorded as unpriced: cost unknown, never $0.\n"
        f"To price it, add it to {path} (or the file ${PRICES_ENV} names), e.g.:\n\n"
        f"[models.{toml_key(model)}]\n"
        "input = 1.00          # USD per million uncached input tokens\n"
        "output = 4.00         # USD per million output tokens (reasoning included)\n"
        "cache_read = 0.10     # optional; default: the input rate\n"
        "cache_write = 1.25    # optional, 5-minute writes; default: the input rate\n"
        "cache_write_1h = 2.00 # optional; default: the cache_write rate\n\n"
        f"or, for a model that costs nothing at the margin (local, subscription):\n\n"
        f"[models.{toml_key(model)}]\n"
        "included = true"
    )


@app.command("prices")
def prices(
    model: Annotated[str, typer.Argument(help="Model name as your calls report it.")],
    provider: Annotated[
        str | None,
        typer.Option("--provider", help="Provider id (anthropic, openai, google, aws, ...)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Price as of this ISO date or time (default: now)."),
    ] = None,
    prices_file: Annotated[
        Path | None,
        typer.Option(
            "--prices",
            envvar=PRICES_ENV,
            show_envvar=True,
            help="Prices overrides TOML file (default: prices.toml in your config directory).",
        ),
    ] = None,
    as_json: JsonOption = False,
    ignore_overrides: IgnoreOverridesOption = False,
) -> None:
    """Show the rates that would price MODEL and where they come from.

    Rates are USD per million tokens. Exits 1 when the model has no known price.
    """
    try:
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError:
        typer.secho(f"error: --at {at!r} is not an ISO date or time", err=True, fg="red")
        raise typer.Exit(2) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    pricer = load_pricer(None if prices_file is None else str(prices_file), ignore_overrides)
    card = pricer.rate_card(model, provider, when)
    if card is None:
        typer.secho(f"error: {_unknown_hint(model, pricer.overrides_path)}", err=True, fg="red")
        raise typer.Exit(1)
    if as_json:
        echo_json(_card_json(card, when))
        return
    _print_card(card, when)


def _print_card(card: RateCard, at: datetime) -> None:
    console = Console()
    if card.source == "overrides":
        origin = f"overrides file {card.overrides_path} ({card.price_version})"
    else:
        origin = f"{card.price_version}, bundled data, {card.provider}/{card.matched_model}"
    origin = f"  priced from {plain_text(origin)}, as of {at.date()}"
    console.print(Text.assemble((plain_text(card.model), "bold"), origin))
    if card.note:
        console.print(f"  {safe_text(card.note)}")
    if card.included or card.rates is None:
        console.print("included: free at the margin (cost 0)")
        return
    table = Table("USD per million tokens", "base", *(f"prompt > {s:,}" for s, _ in card.tiers))
    for name, label in _LABELS:
        table.add_row(
            label, str(getattr(card.rates, name)), *(str(getattr(t, name)) for _, t in card.tiers)
        )
    if card.rates.per_request or any(t.per_request for _, t in card.tiers):
        table.add_row(
            "per request (USD)",
            str(card.rates.per_request),
            *(str(t.per_request) for _, t in card.tiers),
        )
    console.print(table)
    if card.tiers:
        console.print(
            "A tier applies to every token of a call whose prompt (input + cache read + cache "
            "write) exceeds its threshold."
        )
