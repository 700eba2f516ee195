"""The ``llmledger`` command line: a Typer app, one module per command family."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmledger.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``llmledger`` console script."""
    argv = sys.argv[1:]
    # The status line runs after every message of Claude Code: a plain `statusline` command
    # line is run without importing Typer (cli/status_hook.py).
    if argv[:1] == ["statusline"]:
        from llmledger.cli.status_hook import fast_main

        if fast_main(argv[1:]):
            return
    from llmledger.cli._app import main as run

    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from llmledger.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
