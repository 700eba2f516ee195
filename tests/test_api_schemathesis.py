"""Property-based: schemathesis drives every operation of the service's own ``/openapi.json``
in-process (ASGI, no network) with an admin key, on a ledger holding runs and calls. No
answer is a 5xx, and every answer matches the schema the OpenAPI document gives for it: the
documents the reads return are what ``read_models`` says they are.

Bounded: a few dozen examples per operation, no deadline (a first query may load SQLAlchemy).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from llmledger import Usage
from llmledger.api import create_app
from llmledger.api.app import Store
from llmledger.budgets import make_budget, set_budget
from llmledger.keys import create_key
from llmledger.ledger import Ledger
from llmledger.store import open_repository


def _ledger_with_runs(url: str) -> None:
    """A workflow with a task and its attempts, calls at known times, a call with no run, task
    status events and a budget."""
    start = datetime.now(UTC) - timedelta(hours=2)
    with (
        Ledger(url) as ledger,
        ledger.run("workflow", "nightly", key="nightly", agent="claude"),
        ledger.run("task", "Lint", key="1.1") as task,
        task.attempt(),
    ):
        for n in range(3):
            ledger.record(
                Usage(input_tokens=100 + n, output_tokens=10, cache_read_tokens=5),
                model="claude-sonnet-4-20250514",
                started_at=start + timedelta(minutes=n),
            )
        ledger.record(Usage(input_tokens=7), model="unknown-model", started_at=start)
    with Ledger(url) as ledger:
        ledger.record(Usage(input_tokens=1, output_tokens=1), model="gpt-4o", agent="codex")
        # A status history and a budget, for the forecast and budget reads.
        ledger.task_status("1.1", "in_progress", at=start)
        ledger.task_status("1.1", "ready_to_review", at=start + timedelta(hours=1))
        ledger.task_status("1.2", "in_progress", at=start + timedelta(hours=1))
    repo = open_repository(url)
    set_budget(repo, make_budget("daily", 25, window="day", scope=["agent=claude"]))
    repo.engine.dispose()


# The app is built at import (schemathesis reads its OpenAPI while collecting, which opens no
# store); each test gives it a fresh ledger. (schemathesis' lazy fixture loader does not run
# on pytest 9: it sets Function._nodeid.)
_APP = create_app("sqlite:///unused-until-the-fixture-gives-a-store.db")
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture
def admin(db_url: str) -> Iterator[dict[str, str]]:
    """A ledger with runs and calls behind the app; the header with an admin key."""
    _ledger_with_runs(db_url)
    repo = open_repository(db_url)
    key = create_key(repo, "schemathesis", "admin")
    repo.engine.dispose()
    store = _APP.state.store = Store(db_url)
    yield {"Authorization": f"Bearer {key}"}
    store.close()


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_within_its_schema(
    case: schemathesis.Case[Any], admin: dict[str, str]
) -> None:
    response = case.call_and_validate(
        headers=dict(admin), checks=[not_a_server_error, response_schema_conformance]
    )
    # Every request carries the key, but those of schemathesis' "missing credentials" cases.
    if "Authorization" in response.request.headers:
        assert response.status_code not in (401, 403), response.text
