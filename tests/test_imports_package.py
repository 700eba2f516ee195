"""The ``llmledger.imports`` package: its public names, and the modules that load no SQLAlchemy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llmledger.imports


def test_every_public_name_resolves() -> None:
    for name in llmledger.imports.__all__:
        assert getattr(llmledger.imports, name) is not None, name
    # A function re-exported under a submodule's name would be hidden by the submodule.
    assert callable(llmledger.imports.import_logs)
    assert callable(llmledger.imports.discover)


@pytest.mark.parametrize(
    "module",
    [
        "llmledger.imports",
        "llmledger.imports.logfiles",
        "llmledger.imports.plan",
        "llmledger.imports.rows",
        "llmledger.imports.fastpath",
        "llmledger.imports.read",
        "llmledger.imports.workers",
        "llmledger.imports.pipeline",
    ],
)
def test_the_planning_and_the_reads_load_no_sqlalchemy(module: str) -> None:
    # The workers fork from a small process, and a report with nothing new to import plans
    # without loading SQLAlchemy.
    code = f"import sys, {module}; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
