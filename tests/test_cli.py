"""The command line as a whole: every command is reachable, and --help teaches."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from llmledger.cli import app
from llmledger.cli._app import COMMAND_MODULES, _register_commands


def test_every_registered_command_is_in_the_lazy_map() -> None:
    _register_commands()
    names = {info.name for info in app.registered_commands}
    names |= {group.name for group in app.registered_groups}
    assert names == set(COMMAND_MODULES)


def test_each_command_alone_has_help() -> None:
    for command in COMMAND_MODULES:
        result = subprocess.run(
            [sys.executable, "-m", "llmledger", command, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage" in result.stdout


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("llmledger ")
