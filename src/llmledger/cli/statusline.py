"""``llmledger statusline``: the line Claude Code's ``statusLine`` setting shows.

Claude Code runs the command after each assistant message, passes its JSON on stdin and shows
the first line printed. The command imports only the new lines of that session's transcript,
prints one line, and never fails: on any error it prints a short fallback line, writes the
cause to ``statusline.log`` in the user's log directory and exits 0. The work is
:mod:`llmledger.cli.status_hook`'s, which also runs it without Typer when the console script
sees a plain ``statusline`` command line.
"""

from __future__ import annotations

from typing import Annotated

import typer

from llmledger.cli._app import app
from llmledger.cli.status_hook import DEFAULT_SEGMENTS, status_line
from llmledger.reports.statusline import SEGMENTS


@app.command("statusline")
def statusline_command(
    segments: Annotated[
        str,
        typer.Option(
            "--segments",
            help=f"Which segments to show, in this order: any of {', '.join(SEGMENTS)}.",
        ),
    ] = DEFAULT_SEGMENTS,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="Plain text, no ANSI colors (also NO_COLOR=1).")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Import the transcript's new lines before printing (exact, but a grown "
            "transcript costs the import's time). Default: print at once from the ledger and "
            "import them in the background; the line then ends in ↻ and the next one has them.",
        ),
    ] = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="LLMLEDGER_DB",
            help="Ledger database URL (sqlite:///PATH or postgresql+psycopg://...). "
            "Default: a SQLite file in your data directory.",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    """One status line for Claude Code: model · this session's cost · today's cost · the
    active 5-hour block's cost and time left · burn rate ($/h) · context used.

    Reads the JSON Claude Code sends on stdin; the new lines of that session's transcript are
    imported in the background (or first, with --wait). Never fails: on bad input or any
    error it prints a short fallback line, logs the cause to statusline.log in your log
    directory, and exits 0.

    In ~/.claude/settings.json:

      {"statusLine": {"type": "command", "command": "llmledger statusline"}}

    Examples:

      llmledger statusline < hook.json

      llmledger statusline --segments model,context,session --no-color < hook.json
    """
    # Claude Code reads a pipe: keep the colors (click would strip them off a terminal).
    typer.echo(status_line(segments, color=not no_color, db=db, wait=wait), color=True)


__all__ = ["statusline_command"]
