"""Shared test fixtures: the reference samples in tests/fixtures, and ledgers on SQLite and the real
PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The reference samples and their expected values (copied from the project's shared/fixtures).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures, read in place."""
    return FIXTURES


PG_SERVER = os.environ.get("LLMLEDGER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    """None when the test PostgreSQL server answers, else why not."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_SERVER)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not reachable"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server URL; fails under CI=true when it is down, else skips."""
    problem = _pg_reachable()
    if problem is not None:
        message = f"PostgreSQL at {PG_SERVER} is not reachable ({problem})"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message + "; CI must run the PostgreSQL tests")
        pytest.skip(message + "; start it or set LLMLEDGER_TEST_PG")
    return PG_SERVER


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL to a fresh, empty schema on the real PostgreSQL server, dropped afterwards."""
    import sqlalchemy

    schema = f"llmledger_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(pg_server)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{pg_server}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL to a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh ledger URL, once on SQLite and once on the real PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))
