"""``llmledger spool``: what a remote ledger has not delivered yet, and delivering it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from llmledger.cli._app import JsonOption, app, echo_json, fail

spool_app = typer.Typer(
    help="The local spool of a remote ledger (LLMLEDGER_DB=http://...): show it, send it.",
    no_args_is_help=True,
)
app.add_typer(spool_app, name="spool")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        "--to",
        envvar="LLMLEDGER_DB",
        show_envvar=True,
        help="The service (http://host:8787) whose spool to use. Default: every spool in the "
        "cache directory.",
    ),
]
SpoolOption = Annotated[
    Path | None,
    typer.Option(
        "--spool",
        envvar="LLMLEDGER_SPOOL",
        show_envvar=True,
        help="The spool file itself (as given to Ledger(spool=...)).",
    ),
]


def _spools(url: str | None, path: Path | None) -> list[tuple[Path, str | None]]:
    """The spools a command works on, each with the service URL it is for (if known)."""
    from llmledger.remote import is_remote_url, spool_path_for

    if url is not None and not is_remote_url(url):
        url = None  # LLMLEDGER_DB names a local ledger: it has no spool
    if path is not None:
        return [(path, url)]
    if url is not None:
        return [(spool_path_for(url), url)]
    import platformdirs

    cache = Path(platformdirs.user_cache_dir("llmledger", appauthor=False))
    return [(found, None) for found in sorted(cache.glob("spool-*.db"))]


@spool_app.command("status")
def status_command(
    db: UrlOption = None, spool: SpoolOption = None, as_json: JsonOption = False
) -> None:
    """Show what waits in the spool: pending writes by kind, the oldest one's age, the last
    send error, and the dead letters (writes the service refused; `spool flush --retry-dead`
    sends them again).

    Example: LLMLEDGER_DB=http://ledger.internal:8787 llmledger spool status
    """
    from llmledger.remote import Spool

    documents: list[dict[str, Any]] = []
    for path, url in _spools(db, spool):
        if not path.exists():
            documents.append({"path": str(path), "url": url, "pending": 0, "dead": 0})
            continue
        store = Spool(path, url)
        try:
            status = store.status()
            document = status.to_dict()
            document["dead_letters"] = [
                {
                    "kind": letter.kind,
                    "ref": letter.ref,
                    "http_status": letter.http_status,
                    "error": letter.error,
                    "failed_at": letter.failed_at,
                }
                for letter in store.dead_letters(20)
            ]
        finally:
            store.close()
        documents.append(document)
    if as_json:
        echo_json({"spools": documents})
        return
    if not documents:
        typer.echo("no spool (nothing was written to a service from this machine)")
    for document in documents:
        typer.echo(f"{document['path']}  ({document.get('url') or 'service unknown'})")
        kinds = document.get("pending_by_kind") or {}
        detail = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        typer.echo(f"  pending: {document['pending']}" + (f" ({detail})" if detail else ""))
        if document.get("oldest_age_s") is not None:
            typer.echo(f"  oldest: {document['oldest_age_s']:.1f}s ago")
        if document.get("last_error"):
            typer.echo(f"  last error: {document['last_error']}")
        typer.echo(f"  dead letters: {document['dead']}")
        for letter in document.get("dead_letters", [])[:5]:
            typer.echo(f"    {letter['kind']} {letter['ref'] or '-'}: {letter['error']}")


@spool_app.command("flush")
def flush_command(
    db: UrlOption = None,
    spool: SpoolOption = None,
    timeout: Annotated[
        float, typer.Option(help="Give up after this many seconds (what is left stays).")
    ] = 60.0,
    retry_dead: Annotated[
        bool,
        typer.Option("--retry-dead", help="Put the dead letters back in the queue first."),
    ] = False,
) -> None:
    """Send what waits in the spool to the service now, in order, and wait for it. Exit 0
    when the spool is empty, 1 when writes are left (the service is down or refuses the key:
    the last error is printed). The API key is LLMLEDGER_API_KEY.

    Writes are idempotent on the service: running this while another process sends, or
    again after an interruption, stores nothing twice.

    Example: llmledger spool flush --db http://ledger.internal:8787
    """
    from llmledger.remote import Sender, Spool

    spools = _spools(db, spool)
    deadline = time.monotonic() + timeout
    left_total = 0
    for path, url in spools:
        if not path.exists():
            continue
        store = Spool(path, url)
        try:
            status = store.status()
            target = url or status.url
            if target is None:
                raise fail(f"{path}: the spool does not say which service it is for; use --db")
            if retry_dead:
                store.requeue_dead()
            sender = Sender(target, store, api_key=os.environ.get("LLMLEDGER_API_KEY") or None)
            before = store.pending()
            # What is queued now; a writer that keeps appending is not waited for forever.
            sender.send_pending(deadline, upto=store.last_seq())
            sender.stop()
            left = store.pending()
            left_total += left
            line = f"{path}: sent {sender.sent}, dead-lettered {sender.dead}, left {left}"
            if before == 0:
                line = f"{path}: nothing to send"
            typer.echo(line)
            if left and sender.last_error:
                typer.echo(f"  last error: {sender.last_error}", err=True)
        finally:
            store.close()
    if left_total:
        raise typer.Exit(1)
