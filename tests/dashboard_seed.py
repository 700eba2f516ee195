"""A small ledger for the dashboard's tests: ten days of calls in the last month (priced,
reported, unpriced and model-less), a workflow with a task retried as attempts (one failed)
and status events, a codex task, and enough small task runs to fill two pages of runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger import Usage
from llmledger.call import Call
from llmledger.ledger import Ledger

#: The first seeded day: 10:00 UTC nine days before today (all days are inside "7d"..."30d").
START = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=9)
SONNET = "claude-sonnet-4-5"
#: How many small task runs ``seed`` adds beside the workflow (two pages of 25 with the rest).
SMALL_TASKS = 30


def _call(at: datetime, n: int, **fields: Any) -> Call:
    usage = Usage(
        input_tokens=1000 + n, output_tokens=200 + n, cache_read_tokens=500, cache_write_tokens=100
    )
    return Call(usage=fields.pop("usage", usage), started_at=at, dedupe_key=f"seed-{n}", **fields)


def seed(url: str) -> str:
    """Fill the ledger at ``url``; returns the workflow run's id."""
    n = 0
    with Ledger(url) as ledger:
        with (
            ledger.run("workflow", "Nightly", key="nightly", agent="claude-code") as flow,
            ledger.run("task", "Fix the pager", key="1.1", agent="claude-code") as task,
        ):
            ledger.add_status_event("in_progress", run=task, from_status="todo")
            for attempt in (1, 2):
                try:
                    with task.attempt():
                        at = START + timedelta(hours=attempt)
                        ledger.record(_call(at, n := n + 1, source="api", model=SONNET))
                        ledger.record(_call(at, n := n + 1, source="api", model="gpt-4o"))
                        if attempt == 1:
                            raise RuntimeError("the first attempt fails")
                except RuntimeError:
                    pass
            ledger.add_status_event("done", run=task, from_status="in_progress")
        for day in range(10):
            at = START + timedelta(days=day, hours=2)
            model = SONNET if day % 2 else "gpt-4o"
            ledger.record(_call(at, n := n + 1, source="api", model=model, agent_id="claude-code"))
        with ledger.run("task", "Docs", key="2.1", agent="codex"):
            at = START + timedelta(days=3, hours=5)
            ledger.record(
                _call(at, n := n + 1, source="codex_exec_json", model="gpt-5", agent_id="codex"),
                cost_usd="0.25",
            )
            ledger.record(_call(at, n := n + 1, source="api", model="no-such-model-x"))
            ledger.record(_call(at, n := n + 1, source="api", model=None))
        for i in range(SMALL_TASKS):
            with ledger.run("task", f"Small {i}", key=f"3.{i}", agent="codex"):
                at = START + timedelta(days=5, minutes=i)
                ledger.record(_call(at, n := n + 1, source="api", model="gpt-4o", agent_id="codex"))
        return flow.id
