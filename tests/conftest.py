"""Shared test fixtures: where ../shared is, and ledgers on SQLite and the real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMLEDGER_SHARED", ROOT.parent / "shared")).resolve()
FIXTURES = SHARED / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures, read in place."""
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES}; set LLMLEDGER_SHARED")
    return FIXTURES
