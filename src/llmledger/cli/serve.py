"""``llmledger serve``: the ledger as an HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from llmledger.cli._app import DbOption, app, fail
from llmledger.errors import StoreError

#: The app factory every worker imports (``uvicorn --factory``); it reads the environment.
APP_FACTORY = "llmledger.api.app:app_from_env"


@app.command("serve")
def serve_command(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but loopback needs an API key to exist "
            "(or --no-auth)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8787,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes. Several suit PostgreSQL; on SQLite they share the file "
            "through WAL, one writer at a time.",
        ),
    ] = 1,
    db: DbOption = None,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="Accept every request without a key, even with keys in the ledger. Only "
            "behind something else that checks who may connect.",
        ),
    ] = False,
) -> None:
    """Serve the ledger over HTTP: idempotent writes (runs, calls, status events) for remote
    writers and `llmledger import --to`, and reads that return the CLI's --json documents.

    Requests need `Authorization: Bearer <key>` once the ledger holds an active key
    (`llmledger keys create NAME --scope ingest|read|admin`): writes need ingest, reads need
    read, admin may do both. On loopback (the default) the service starts without keys and
    checks nothing until the first key exists; on any other address it refuses to start
    until a key exists, unless --no-auth is given.

    GET /healthz answers 200 with the store's schema revision; the API is described at
    /openapi.json and /docs.

    Example: llmledger serve --host 0.0.0.0 --port 8787 --workers 4 --db postgresql+psycopg://ledger@db/ledger
    """
    from llmledger.keys import has_active_keys
    from llmledger.store import open_repository

    # Opened (and migrated) once here, so the workers do not race to migrate it.
    try:
        repo = open_repository(db)
        try:
            keys_exist = has_active_keys(repo)
        finally:
            repo.engine.dispose()
    except StoreError as exc:
        raise fail(str(exc)) from None
    where = f"{host}:{port}"
    if no_auth:
        typer.secho(
            f"WARNING: --no-auth: every request to {where} is accepted without a key: anyone "
            "who can reach it may read and write this ledger.",
            err=True,
            fg=typer.colors.RED,
            bold=True,
        )
    elif not keys_exist and not is_loopback(host):
        raise fail(
            f"refusing to serve on {host}, which is not a loopback address, while the ledger "
            "has no active API key: anyone who can reach it could read and write it. Create "
            "a key first (llmledger keys create NAME --scope ingest), or pass --no-auth if "
            "something in front of the service checks who may connect."
        )
    elif not keys_exist:
        typer.echo(
            f"note: the ledger has no API key yet, so requests to {where} are not checked "
            "until one exists (llmledger keys create NAME --scope ingest|read|admin).",
            err=True,
        )
    _run(db, host=host, port=port, workers=workers, no_auth=no_auth)


def _run(db: str | None, *, host: str, port: int, workers: int, no_auth: bool) -> None:
    """Start uvicorn on the app factory; every worker reads the store and the auth switch
    from the environment."""
    import uvicorn

    if db is not None:
        os.environ["LLMLEDGER_DB"] = db
    # Set either way: an LLMLEDGER_NO_AUTH left in the environment must not turn checks off.
    os.environ["LLMLEDGER_NO_AUTH"] = "1" if no_auth else "0"
    if workers == 1:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers)
        return
    # Several workers: each one's own counters (ingest failures, request durations) go to
    # files in one directory that every scrape sums (prometheus-client's multiprocess mode),
    # so whichever worker answers a scrape reports the whole server.
    import tempfile

    with tempfile.TemporaryDirectory(prefix="llmledger-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers)
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
