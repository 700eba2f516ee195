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

    from llmledger.imports import ImportSummary, ship

_CHOICES = (*AGENTS, "all")
#: Imports reading more than this show a progress bar.
_PROGRESS_BYTES = 32 * 1024 * 1024
#: Sends of more calls than this show a progress bar.
_PROGRESS_CALLS = 5_000


def agents_of(name: str) -> list[str]:
    """The agents an ``import`` / ``--source`` name stands for (``all`` is every one)."""
    return list(AGENTS) if name == "all" else [name]


class _Bar:
    """A progress bar on stderr (Rich, transient) that appears once the total reaches
    ``threshold``; ``update`` is a pipeline ``Progress`` callback."""

    def __init__(self, description: str, threshold: int, *, bytes_: bool) -> None:
        self.description = description
        self.threshold = threshold
        self.bytes = bytes_
        self.bar: Progress | None = None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            if total < self.threshold:
                return
            # Loaded only here: reports import quietly, before their workers start.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn() if self.bytes else MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.bar.add_task(self.description, total=total)
        self.bar.update(self.bar.task_ids[0], completed=done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _import(
    db: str | None, agents: list[str], paths: list[Path] | None, prices: str | None, quiet: bool
) -> ImportSummary:
    """Run the import, with a progress bar when it is big (unless ``quiet``)."""
    from llmledger.imports.pipeline import run_import

    if quiet:
        return run_import(db, agents, paths, prices=prices)
    bar = _Bar("importing logs", _PROGRESS_BYTES, bytes_=True)
    try:
        return run_import(db, agents, paths, prices=prices, progress=bar.update)
    finally:
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
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="URL",
            help="Send the calls to the llmledger server at URL (http(s)://HOST:PORT) instead "
            "of a local ledger: the logs are imported into this machine's staging ledger for "
            "that server, then the calls it has not acknowledged yet are posted, tagged with "
            "this host. --db / LLMLEDGER_DB set to an http(s) URL does the same.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="LLMLEDGER_API_KEY",
            show_envvar=True,
            help="The server's API key (ingest scope), with --to.",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="NAME",
            help="The host name the calls are filed under on the server, with --to "
            "(default: this machine's).",
        ),
    ] = None,
    staging_dir: Annotated[
        Path | None,
        typer.Option(
            "--staging-dir",
            envvar="LLMLEDGER_STAGING_DIR",
            show_envvar=True,
            help="Where the staging ledgers of --to are (one per server URL). "
            "Default: staging/ in your data directory.",
        ),
    ] = None,
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

      llmledger import --to http://ledger.internal:8787 --api-key llk_...

    With --to, each run sends only what is new or changed since the server last acknowledged
    a batch: a server that is down gets it at the next run (exit 1 until then), and calls
    sent twice are stored once.
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
    if to is None and db is not None and db.startswith(("http://", "https://")):
        to = db
    if to is not None:
        _import_to(to, agents_of(agent), paths, prices, as_json, api_key, host, staging_dir)
        return
    if host is not None:
        raise fail("--host names this machine on a server: use it with --to URL")
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


def _import_to(
    to: str,
    agents: list[str],
    paths: list[Path] | None,
    prices: str | None,
    as_json: bool,
    api_key: str | None,
    host: str | None,
    staging_dir: Path | None,
) -> None:
    """``import --to URL``: import into the server's staging ledger, then send what the
    server lacks; exit 1 when it could not be sent (or the server rejected calls)."""
    from llmledger.imports import ship

    try:
        url = ship.server_url(to)
    except ValueError as exc:
        raise fail(f"--to: {exc}") from None
    path = ship.staging_path(url, staging_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        summary = _import(f"sqlite:///{path}", agents, paths, prices, quiet=as_json)
        ship.mark_changes(path, url)
    except (StoreError, LedgerError, OSError) as exc:
        raise fail(f"staging ledger {path}: {exc}") from None
    if not as_json:
        if summary.files == 0:
            typer.echo("no agent logs found here (calls staged before are still sent)")
        else:
            _print_summary(summary)
    bar = None if as_json else _Bar("sending calls", _PROGRESS_CALLS, bytes_=False)
    try:
        sent = ship.send_pending(
            path, url, api_key=api_key, host=host, progress=None if bar is None else bar.update
        )
    except ship.SendError as exc:
        before = exc.summary
        done = (
            f" ({before.sent:,} calls sent before that; {before.pending:,} still to send)"
            if before is not None
            else ""
        )
        raise fail(f"{exc}{done}", code=1) from None
    finally:
        if bar is not None:
            bar.stop()
    if as_json:
        echo_json({**summary.to_dict(), "sent": sent.to_dict()})
    else:
        _print_sent(sent)
    if sent.rejected:
        raise typer.Exit(1)


def _print_sent(sent: ship.SendSummary) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if sent.sent == 0 and sent.rejected == 0:
        console.print(f"sent to {sent.url}: nothing new (the server has every call)", markup=False)
    else:
        console.print(
            f"sent to {sent.url}: {sent.sent:,} calls as host {sent.host} "
            f"({sent.accepted:,} new or updated, {sent.duplicates:,} already on the server"
            f", {sent.rejected:,} rejected)",
            markup=False,
        )
    if sent.rejected:
        console.print(
            f"[yellow]rejected: {sent.rejected:,}[/yellow] "
            "(they stay staged and are sent again at the next import --to)"
        )
        for error in sent.errors:
            console.print(f"  {error}", markup=False)


__all__ = ["agents_of", "import_command"]
