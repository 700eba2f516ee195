"""``llmledger db``: where the ledger is, and keeping its schema current."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from llmledger.cli._app import DbOption, JsonOption, app, echo_json, fail
from llmledger.display import safe_text
from llmledger.errors import StoreError
from llmledger.store import (
    Repository,
    check_known,
    current_revision,
    head_revision,
    open_engine,
    open_repository,
    upgrade,
)

db_app = typer.Typer(help="Create, migrate and inspect the ledger database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    db: DbOption = None,
    revision: Annotated[
        str, typer.Option(help="Target migration revision (default: the newest).")
    ] = "head",
) -> None:
    """Create the ledger or migrate it to the newest schema. Safe to run again.

    SQLite ledgers are migrated automatically when opened; run this for PostgreSQL, or before
    the first deployment of a new llmledger version against a shared database.
    """
    try:
        engine = open_engine(db)
        before = current_revision(engine)
        upgrade(engine, revision)
        after = current_revision(engine)
    except StoreError as exc:
        raise fail(str(exc)) from None
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        typer.echo(f"{url} is already at revision {after}")
    else:
        typer.echo(f"{url}: migrated {before or 'empty'} -> {after}")


@db_app.command("info")
def db_info(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show where the ledger is, its schema revision and how many rows each table holds."""
    try:
        engine = open_engine(db)
        revision = current_revision(engine)
        check_known(revision)
        counts = Repository(engine).counts() if revision is not None else {}
    except StoreError as exc:
        raise fail(str(exc)) from None
    info: dict[str, Any] = {
        "url": engine.url.render_as_string(hide_password=True),
        "backend": engine.dialect.name,
        "revision": revision,
        "head": head_revision(),
        "up_to_date": revision == head_revision(),
        "rows": counts,
    }
    if as_json:
        echo_json(info)
        return
    console = Console()
    console.print(f"[bold]ledger[/bold]   {safe_text(info['url'])}")
    state = "up to date" if info["up_to_date"] else "run `llmledger db upgrade`"
    shown = safe_text(revision or "empty")
    console.print(f"[bold]revision[/bold] {shown} (newest {info['head']}; {state})")
    if counts:
        table = Table("table", "rows")
        for name, count in counts.items():
            table.add_row(name, f"{count:,}")
        console.print(table)


__all__ = ["db_app"]


@db_app.command("repair")
def db_repair(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Mark runs interrupted whose process on this machine is gone (killed, crashed, rebooted).

    Their calls are kept and rolled up into the run. Each run's finish time is that of the
    last call in it (the last sign of its process alive); a run with no call keeps no finish
    time, and the output says why. Opening a ledger from Python does this too; runs owned by
    other machines are left alone.
    """
    from llmledger.ledger import repair_stale_runs

    try:
        repo = open_repository(db)
        try:
            repaired = repair_stale_runs(repo)
            rows = [repo.get_run(run_id) or {} for run_id in repaired]
        finally:
            repo.engine.dispose()
    except StoreError as exc:
        raise fail(str(exc)) from None
    details = [
        {
            "id": run_id,
            "finished_at": row["finished_at"].isoformat() if row.get("finished_at") else None,
            "finished_at_unknown": (row.get("metadata") or {}).get("finished_at_unknown"),
        }
        for run_id, row in zip(repaired, rows, strict=True)
    ]
    if as_json:
        typer.echo(json.dumps({"interrupted": repaired, "runs": details}))
        return
    typer.echo(f"marked {len(repaired)} stale run(s) interrupted")
    for item in details:
        when = item["finished_at"] or f"finish time unknown: {item['finished_at_unknown']}"
        typer.echo(f"  {item['id']}: {when}")
