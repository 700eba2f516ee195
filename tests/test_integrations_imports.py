"""Importing llmledger (and the ledger) must not import any SDK an integration wraps."""

from __future__ import annotations

import subprocess
import sys

SDKS = ("openai", "anthropic", "langchain_core", "litellm")


def test_importing_llmledger_imports_no_sdk() -> None:
    code = (
        "import sys, llmledger, llmledger.ledger, llmledger.integrations, "
        "llmledger.integrations.openai, llmledger.integrations.anthropic\n"
        f"print(sorted(m for m in {SDKS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
