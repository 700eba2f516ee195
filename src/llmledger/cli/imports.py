"""``llmledger import``: read what is new in the coding agents' logs into the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from llmledger.agents import AGENTS, BY_NAME
from llmledger.cli._app import (
    DbOption,
    IgnoreOverridesOption,
    JsonOption,
    app,
    checked_overrides,
    echo_json,
    fail,
)
from llmledger.errors import LedgerError, StoreError

if TYPE_CHECKING:
    from rich.progress import Progress

    from llmledger.imports import ImportSummary

_CHOICES = (*AGENTS, "all")
#: Imports reading more than this show a progress bar.
_PROGRESS_BYTES = 32 * 1024 * 1024


def agents_of(name: str) -> list[str]:
    """The agents an ``import`` / ``--source`` name stands for (``all`` is every one)."""
    return list(AGENTS) if name == "all" else [name]


def _import(
    db: str | None, agents: list[str], paths: list[Path] | None, prices: str | None, quiet: bool
) -> ImportSummary:
    """Run the import, with a progress bar when it is big (unless ``quiet``)."""
    from llmledger.imports.pipeline import run_import

    if quiet:
        return run_import(db, agents, paths, prices=prices)
    bar: Progress | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            if total < _PROGRESS_BYTES:
                return
            # Loaded only here: reports import quietly, before their workers start.
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

            bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            bar.start()
            bar.add_task("importing logs", total=total)
        bar.update(bar.task_ids[0], completed=done)

    try:
        return run_import(db, agents, paths, prices=prices, progress=progress)
    finally:
        if bar is not None:
            bar.stop()


def _print_summary(summary: ImportSummary) -> None:
    from rich.console import Console

    from llmledger.display import plain_text

    console = Console()
    s = summary
    console.print(
        f"files: {s.files:,} ({s.files_read:,} read, {s.files_skipped_unchanged:,} unchanged"
        + (f", {s.files_reread:,} read again" if s.files_reread else "")
        + f") · lines: {s.lines:,} · calls added: {s.calls_added:,}"
        + (f" ({s.calls_updated:,} updated)" if s.calls_updated else "")
        + f" · duplicates: {s.duplicates:,}"
        + (f" · sessions added: {s.sessions_added:,}" if s.sessions_added else "")
    )
    if s.skipped:
        reasons = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(s.skipped.items()))
        console.print(f"[yellow]lines skipped: {s.lines_skipped:,}[/yellow] ({reasons})")
        for error in s.errors:
            console.print(f"  {plain_text(error)}", markup=False, highlight=False)


@app.command("import")
def import_command(
    agent: Annotated[
        str,
        typer.Argument(help="Which agent's logs: claude, codex, gemini or all.", show_default=True),
    ] = "all",
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files or directories to read instead of the default locations."),
    ] = None,
    db: DbOption = None,
    prices: Annotated[
        str | None,
        typer.Option(
            "--prices",
            envvar="LLMLEDGER_PRICES",
            help="Price overrides TOML file.",
            show_envvar=True,
        ),
    ] = None,
    as_json: JsonOption = False,
    ignore_overrides: IgnoreOverridesOption = False,
) -> None:
    """Import the usage in coding agents' logs, incrementally: each call once, copies dropped.

    Reads Claude Code transcripts ($CLAUDE_CONFIG_DIR, comma-separated, else ~/.config/claude
    and ~/.claude, each with projects/), Codex rollouts ($CODEX_HOME else ~/.codex: sessions/
    and archived_sessions/) and Gemini CLI logs (~/.gemini/tmp). The next import reads only
    what was appended; a truncated or replaced file is read again, harmlessly.

    Examples:

      llmledger import                     # every agent, from where it writes

      llmledger import claude ~/backup/.claude

      llmledger import all --json
    """
    if agent not in _CHOICES:
        if Path(agent).exists():  # `llmledger import PATH`: every agent, under that path
            paths = [Path(agent), *(paths or [])]
            agent = "all"
        else:
            raise fail(f"unknown agent {agent!r}: use one of {', '.join(_CHOICES)}, or a path")
    for path in paths or []:
        if not path.exists():
            raise fail(f"{path} does not exist: name a log file or a directory of logs")
    prices = checked_overrides(prices, ignore_overrides)  # a broken file stops it: exit 2
    try:
        summary = _import(db, agents_of(agent), paths, prices, quiet=as_json)
    except (StoreError, LedgerError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        echo_json(summary.to_dict())
    else:
        if summary.files == 0:
            typer.echo(
                "no agent logs found: pass a path, or set "
                + " / ".join(agent.roots_env for agent in BY_NAME.values())
                + " to where they are"
            )
            return
        _print_summary(summary)


__all__ = ["agents_of", "import_command"]
