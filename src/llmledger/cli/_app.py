"""The root Typer app and the options every command shares."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmledger import __version__

if TYPE_CHECKING:
    from llmledger.pricing import Pricer

app = typer.Typer(
    name="llmledger",
    help=(
        "The books for LLM work: record model calls, price them, and report what plans, "
        "tasks, agents, models and days cost.\n\n"
        "The ledger is a SQLite file in your data directory unless --db or LLMLEDGER_DB "
        "names another (sqlite:///path or postgresql+psycopg://user@host/db)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _checked_db(value: str | None) -> str | None:
    # Every command's --db (or LLMLEDGER_DB) is checked here, before anything is opened.
    from llmledger.store.urls import check_url

    try:
        check_url(value)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return value


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="LLMLEDGER_DB",
        callback=_checked_db,
        help="Ledger database URL (sqlite:///PATH or postgresql+psycopg://...). "
        "Default: a SQLite file in your data directory.",
        show_envvar=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CsvOption = Annotated[
    bool,
    typer.Option(
        "--csv",
        help="Print CSV instead of a table: a header, then a row per row of the --json "
        "document, with its keys as columns.",
    ),
]
IgnoreOverridesOption = Annotated[
    bool,
    typer.Option(
        "--ignore-overrides",
        help="Price without the prices overrides file (logged costs and genai-prices' bundled "
        "data only), even when it is broken.",
    ),
]


def echo_json(document: Any) -> None:
    """Print ``document`` as indented JSON on stdout (orjson: a large report prints in
    milliseconds)."""
    import orjson

    try:
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        # orjson nests at most 255 levels: a run tree over ~120 deep goes through json.
        import json

        text = json.dumps(document, indent=2, ensure_ascii=False).encode()
    typer.echo(text)


def echo_csv(rows: Sequence[Mapping[str, Any]], *, expand: str | None = None) -> None:
    """Print the row list of a ``--json`` document as CSV on stdout (``expand``: the list in
    each row to give a row per item, as ``--breakdown`` does), flattened as
    :mod:`llmledger.reports.csv_rows` says."""
    from llmledger.reports.csv_rows import write_csv

    write_csv(rows, sys.stdout, expand=expand)


def check_output(as_json: bool, as_csv: bool) -> None:
    """Stop a command given both ``--json`` and ``--csv``: it prints one or the other."""
    if as_json and as_csv:
        raise fail("--json and --csv print different documents; give one of them")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise (``raise fail(...)``)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def load_pricer(path: str | None, ignore_overrides: bool) -> Pricer:
    """The Pricer a command prices with: without overrides when told to ignore them, else with
    the file ``path`` names (default: the one in effect). A broken file stops the command:
    exit 2 with the file, the line and the reason."""
    from llmledger.pricing import NO_OVERRIDES, OverridesError, Pricer

    try:
        return Pricer(NO_OVERRIDES if ignore_overrides else path)
    except OverridesError as exc:
        raise fail(f"{exc} (fix it, or pass --ignore-overrides to price without it)") from None


def checked_overrides(path: str | None, ignore_overrides: bool) -> str | None:
    """The overrides path to hand to an import (its workers read the file themselves), once
    :func:`load_pricer` found it readable; ``pricing.NO_OVERRIDES`` when told to ignore it."""
    if ignore_overrides:
        from llmledger.pricing import NO_OVERRIDES

        return NO_OVERRIDES
    # Without a file in effect there is nothing to check: spare a report the pricing module.
    # (The same places pricing.default_overrides_path looks.)
    if path is None and not os.environ.get("LLMLEDGER_PRICES"):
        import platformdirs

        if not (Path(platformdirs.user_config_dir("llmledger")) / "prices.toml").exists():
            return None
    load_pricer(path, False)
    return path


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmledger {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """The books for LLM work."""


#: Which module defines each command; a command line that names one imports only that module.
COMMAND_MODULES = {
    "budget": "budget",
    "db": "db",
    "import": "imports",
    "keys": "keys",
    "spool": "spool",
    "parse": "parse",
    "plan": "plan",
    "prices": "prices",
    "daily": "reports",
    "weekly": "reports",
    "monthly": "reports",
    "sessions": "reports",
    "blocks": "reports",
    "tokens": "reports",
    "run": "run",
    "runs": "runs",
    "show": "runs",
    "schema": "schema",
    "serve": "serve",
    "task": "tasks",
    "velocity": "tasks",
    "eta": "tasks",
    "statusline": "statusline",
}


def _register_commands(argv: list[str] | None = None) -> None:
    # Each command family lives in its own module and adds itself to ``app`` on import. A
    # report should not pay for importing the plan runner: load only the module the command
    # line names, or all of them for --help and anything unknown.
    command = next((arg for arg in argv or [] if not arg.startswith("-")), None)
    wanted = {COMMAND_MODULES[command]} if command in COMMAND_MODULES else None
    for module in sorted(wanted or set(COMMAND_MODULES.values())):
        importlib.import_module(f"llmledger.cli.{module}")


def main() -> None:
    """Entry point of the ``llmledger`` console script."""
    # Rich lays tables out for 80 columns when the output is not a terminal (a pipe, a CI
    # log), which folds every column of a report; give piped tables room unless told.
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        os.environ["COLUMNS"] = "160"
    _register_commands(sys.argv[1:])
    app()
