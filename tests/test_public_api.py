"""The package's public surface: a short curated ``__all__``, importable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys

import llmledger


def test_every_public_name_resolves() -> None:
    for name in llmledger.__all__:
        assert getattr(llmledger, name) is not None, name


def test_import_is_cheap() -> None:
    code = (
        "import sys, llmledger; print('sqlalchemy' in sys.modules, 'genai_prices' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_record_through_the_top_level_api(tmp_path: object) -> None:
    ledger = llmledger.Ledger(f"sqlite:///{tmp_path}/l.db")
    with ledger.run("task", "t") as task:
        ledger.record(llmledger.Usage(input_tokens=3, output_tokens=1), model="gpt-4o")
    assert task.totals().usage.total_tokens == 4
    ledger.close()
