"""``llmledger keys``: the API keys of ``llmledger serve`` (create, list, revoke)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from llmledger.cli._app import DbOption, JsonOption, app, echo_json, fail
from llmledger.display import safe_text
from llmledger.errors import StoreError, UsageError
from llmledger.keys import Scope, create_key, list_keys, revoke_key
from llmledger.store import open_repository

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help=(
        "API keys of the ledger service (`llmledger serve`). Clients send a key as "
        "`Authorization: Bearer llk_...`. Scopes: ingest (write runs, calls, status events), "
        "read (runs and reports), admin (both). The ledger stores only each key's SHA-256: a "
        "key is shown once, when it is created. While no active key exists, a server on "
        "127.0.0.1 answers without one."
    ),
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

NameArgument = Annotated[
    str, typer.Argument(help="The key's name: 1-64 letters, digits, '_', '.', '@', '-'.")
]


@keys_app.command("create")
def keys_create(
    name: NameArgument,
    scope: Annotated[
        Scope,
        typer.Option(
            "--scope",
            help="What the key may do: ingest (writes), read (reads) or admin (both).",
        ),
    ],
    db: DbOption = None,
) -> None:
    """Create a key and print it (on stdout, alone on its line).

    The key is shown this once: the ledger keeps only its hash. Store it where the client
    reads it (LLMLEDGER_API_KEY). A revoked key's name may be used again.

    Examples:

      llmledger keys create ci --scope ingest

      export LLMLEDGER_API_KEY=$(llmledger keys create laptop --scope ingest)
    """
    try:
        repo = open_repository(db)
        try:
            key = create_key(repo, name, scope)
        finally:
            repo.engine.dispose()
    except (StoreError, UsageError, SQLAlchemyError) as exc:
        raise fail(str(exc)) from None
    typer.echo(key)
    typer.secho(
        f"created key {name!r} (scope {scope}). This is the only time it is shown: it cannot "
        "be shown again, so store it now (revoke it and create another if it is lost).",
        err=True,
        fg=typer.colors.YELLOW,
    )


@keys_app.command("list")
def keys_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the keys: name, scope, when created, last used (to the minute) and revoked.

    The keys themselves are never shown (the ledger does not have them)."""
    try:
        repo = open_repository(db)
        try:
            keys = list_keys(repo)
        finally:
            repo.engine.dispose()
    except StoreError as exc:
        raise fail(str(exc)) from None
    if as_json:
        echo_json({"keys": [key.to_dict() for key in keys]})
        return
    if not keys:
        typer.echo("no keys; create one with `llmledger keys create NAME --scope ingest`")
        return
    table = Table("name", "scope", "created (UTC)", "last used", "revoked")
    for key in keys:
        table.add_row(
            safe_text(key.name),
            key.scope,
            _when(key.created_at),
            _when(key.last_used_at),
            _when(key.revoked_at),
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(name: NameArgument, db: DbOption = None) -> None:
    """Revoke a key: the server refuses it from the next request on. Exit 1 when no key has
    that name. The revoked key stays listed (with when it was revoked)."""
    try:
        repo = open_repository(db)
        try:
            known = {key.name: key for key in list_keys(repo)}
            found = revoke_key(repo, name)
        finally:
            repo.engine.dispose()
    except (StoreError, SQLAlchemyError) as exc:
        raise fail(str(exc)) from None
    if not found:
        raise fail(f"no key named {name!r}; `llmledger keys list` shows them", code=1)
    before = known.get(name)
    if before is not None and not before.active:
        typer.echo(f"key {name!r} was revoked already")
    else:
        typer.echo(f"revoked key {name!r}")


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at is not None else "-"
