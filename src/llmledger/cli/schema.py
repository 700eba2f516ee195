"""``llmledger schema NAME``: the JSON Schema of a canonical document."""

from __future__ import annotations

from typing import Annotated

import typer

from llmledger.cli._app import app, fail
from llmledger.schemas import NAMES, load

_EPILOG = (
    "Names: call (a call record, as POST /v1/calls takes it), run (show --json), runs "
    "(runs --json), report (daily/weekly/monthly --json), sessions, blocks, tokens (those "
    "reports' --json), usage (GET /v1/workflows|tasks|agents/KEY/usage).\n\n"
    "Examples:\n\n  llmledger schema call\n\n  llmledger schema run > run.schema.json"
)


@app.command("schema", epilog=_EPILOG)
def schema_command(
    name: Annotated[str, typer.Argument(help=f"Which document: {', '.join(NAMES)}.")],
) -> None:
    """Print the JSON Schema (draft 2020-12) of a canonical document: what the CLI's --json
    prints and the service returns (run, report, ...) or takes (call). The same schemas ship
    in the package (llmledger/schemas/NAME.json) and describe the service's /openapi.json.
    """
    if name not in NAMES:
        raise fail(f"unknown schema {name!r}: use one of {', '.join(NAMES)}")
    typer.echo(load(name), nl=False)
