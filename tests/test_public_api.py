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


def test_the_reports_package_names_resolve_and_the_fast_reports_load_no_sqlalchemy() -> None:
    import llmledger.queries
    import llmledger.reports

    for name in llmledger.reports.__all__:
        assert getattr(llmledger.reports, name) is not None, name
    for name in llmledger.queries.__all__:  # the former path, kept
        assert getattr(llmledger.queries, name) is not None, name
    assert llmledger.queries.blocks is llmledger.reports.blocks.blocks
    code = (
        "import sys\n"
        "from llmledger.reports import Filters, period_report, sessions_report\n"
        "from llmledger.reports.blocks import blocks\n"
        "from llmledger.reports.documents import report_json\n"
        "print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]
