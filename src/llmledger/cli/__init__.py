"""The ``llmledger`` command line: a Typer app, one module per command family."""

from __future__ import annotations

from llmledger.cli._app import app, main

__all__ = ["app", "main"]
