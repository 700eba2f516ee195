"""The root Typer app and the options every command shares."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer

from llmledger import __version__

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

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="LLMLEDGER_DB",
        help="Ledger database URL (sqlite:///PATH or postgresql+psycopg://...). "
        "Default: a SQLite file in your data directory.",
        show_envvar=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def echo_json(document: Any) -> None:
    """Print ``document`` as indented JSON on stdout (orjson: a large report prints in
    milliseconds)."""
    import orjson

    typer.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise (``raise fail(...)``)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


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
    "db": "db",
    "import": "imports",
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
