"""The collector: every terminal path records, retries keep every attempt, concurrency is
exact, and a broken store never breaks the caller."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import UTC
from decimal import Decimal
from pathlib import Path

import pytest

from llmledger import Call, Usage
from llmledger.ledger import Ledger, Run, current_run
from llmledger.totals import Totals


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    with Ledger(sqlite_url) as book:
        yield book


def _usage(n: int = 1) -> Usage:
    return Usage(input_tokens=10 * n, output_tokens=n, cache_read_tokens=0)


def _status(ledger: Ledger, run: Run) -> str:
    row = ledger.repository.get_run(run.id)
    assert row is not None
    return str(row["status"])


def test_success_records_and_rolls_up(ledger: Ledger) -> None:
    with ledger.run("workflow", "w") as workflow, ledger.run("task", key="t1") as task:
        assert current_run() is task
        assert task.parent is workflow
        ledger.record(_usage(2), model="claude-sonnet-4-5")
    assert current_run() is None
    assert _status(ledger, task) == "succeeded"
    row = ledger.repository.get_run(workflow.id)
    assert row is not None
    assert row["input_tokens"] == 20
    assert row["call_count"] == 1
    assert row["cost_usd"] is not None  # a known model is priced


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RuntimeError("boom"), "failed"),
        (TimeoutError("slow"), "timed_out"),
        (KeyboardInterrupt(), "cancelled"),
    ],
)
def test_every_terminal_path_records(ledger: Ledger, error: BaseException, status: str) -> None:
    def agent_step() -> None:
        with ledger.run("task") as task:
            runs.append(task)
            ledger.record(_usage(), model="m")
            raise error

    runs: list[Run] = []
    with pytest.raises(type(error)) as raised:
        agent_step()
    [task] = runs
    assert raised.value is error  # re-raised untouched
    assert _status(ledger, task) == status
    assert ledger.totals(task.id).usage.input_tokens == 10


def test_asyncio_timeout_and_cancellation(ledger: Ledger) -> None:
    runs: dict[str, Run] = {}

    async def work(name: str, timeout: float | None = None) -> None:
        async with ledger.arun("task", name, timeout=timeout) as run:
            runs[name] = run
            ledger.record(_usage(), model="m")
            await asyncio.Event().wait()  # never set: ends by timeout or cancellation

    async def timeout_inside_the_run() -> None:
        with ledger.run("task", "inner-timeout") as run:
            runs["inner-timeout"] = run
            ledger.record(_usage(), model="m")
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await work("timeout", timeout=0.01)
        with pytest.raises(TimeoutError):
            await timeout_inside_the_run()
        task = asyncio.create_task(work("cancel"))
        while "cancel" not in runs:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _status(ledger, runs["timeout"]) == "timed_out"
    assert _status(ledger, runs["inner-timeout"]) == "timed_out"
    assert ledger.totals(runs["timeout"].id).calls == 1
    assert _status(ledger, runs["cancel"]) == "cancelled"
    assert ledger.totals(runs["cancel"].id).calls == 1


def test_retry_with_three_attempts_keeps_every_attempt(ledger: Ledger) -> None:
    with ledger.run("task", "flaky") as task:
        for n in (1, 2, 3):
            try:
                with task.attempt() as attempt:
                    assert attempt.attempt_number == n
                    ledger.record(_usage(n), model="m")
                    if n < 3:
                        raise RuntimeError(f"attempt {n} failed")
            except RuntimeError:
                continue
    attempts = [ledger.totals(a).usage.output_tokens for a in _children(ledger, task)]
    assert sorted(attempts) == [1, 2, 3]  # type: ignore[type-var]
    assert ledger.totals(task.id).usage.output_tokens == 6
    assert ledger.totals(task.id, inclusive=False).calls == 0
    assert _status(ledger, task) == "succeeded"


def _children(ledger: Ledger, run: Run) -> list[str]:
    from sqlalchemy import select

    from llmledger.store.schema import runs

    with ledger.repository.engine.connect() as conn:
        return list(conn.execute(select(runs.c.id).where(runs.c.parent_id == run.id)).scalars())


def test_eight_threads_and_eight_asyncio_tasks_into_one_workflow(ledger: Ledger) -> None:
    import contextvars

    per_worker = 25
    with ledger.run("workflow", "parallel") as workflow:

        def thread_worker(i: int) -> None:
            with ledger.run("task", f"thread-{i}"):
                for _ in range(per_worker):
                    ledger.record(_usage(), model="m")

        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(thread_worker, i))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()

        async def async_worker(i: int) -> None:
            async with ledger.arun("task", f"async-{i}"):
                for _ in range(per_worker):
                    ledger.record(_usage(), model="m")
                    await asyncio.sleep(0)

        async def main() -> None:
            await asyncio.gather(*(async_worker(i) for i in range(8)))

        asyncio.run(main())
        for thread in threads:
            thread.join()
    totals = ledger.totals(workflow.id)
    assert totals.calls == 16 * per_worker
    assert totals.usage.input_tokens == 16 * per_worker * 10
    assert len(_children(ledger, workflow)) == 16
    assert ledger.failures == 0


def test_direct_task_has_the_same_shape_as_one_in_a_workflow(ledger: Ledger) -> None:
    with ledger.run("task", "alone") as alone:
        ledger.record(_usage(), model="m")
    with ledger.run("workflow"), ledger.run("task", "inside") as inside:
        ledger.record(_usage(), model="m")
    assert ledger.totals(alone.id) == ledger.totals(inside.id)


def test_missing_metadata_still_stores_the_call_flagged(ledger: Ledger) -> None:
    [call] = ledger.record(Usage())
    assert call.metadata["flags"] == ["no_run", "no_model", "no_usage"]
    assert ledger.repository.counts()["calls"] == 1


def test_reported_cost_wins(ledger: Ledger) -> None:
    with ledger.run("task") as task:
        ledger.record(_usage(), model="claude-sonnet-4-5", cost_usd=Decimal("1.25"))
    totals = ledger.totals(task.id)
    assert totals.cost_usd == Decimal("1.25")


def test_unknown_model_is_unpriced_not_zero(ledger: Ledger) -> None:
    with ledger.run("task") as task:
        ledger.record(_usage(), model="no-such-model-xyz")
    totals = ledger.totals(task.id)
    assert totals.cost_usd is None
    assert totals.unpriced_calls == 1


def test_record_a_call_object_twice_is_idempotent(ledger: Ledger) -> None:
    call = Call(_usage(), source="test", model="m", dedupe_key="msg_1")
    with ledger.run("task") as task:
        ledger.record(call)
        ledger.record(call)
    assert ledger.totals(task.id).calls == 1


def test_non_durable_ledger_flushes_when_the_run_ends(sqlite_url: str) -> None:
    with Ledger(sqlite_url, durable=False) as book:
        with book.run("task") as task:
            book.record(_usage(), model="m")
            assert book.repository.counts()["calls"] == 0
        assert book.repository.counts()["calls"] == 1
        assert book.totals(task.id).calls == 1


class _Recorder:
    def __init__(self) -> None:
        self.records: list[str] = []
        self.finalized: list[str] = []
        self.failures: list[str] = []

    def on_record(self, call: Call, price: object, run: Run | None) -> None:
        self.records.append(call.model or "")

    def on_finalize(self, run: Run, status: str, totals: Totals | None) -> None:
        self.finalized.append(status)

    def on_failure(self, error: BaseException, what: str) -> None:
        self.failures.append(what)


def test_store_outage_never_raises_into_the_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    observer = _Recorder()
    book = Ledger(f"sqlite:///{blocker}/ledger.db", observers=[observer])
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        with book.run("task") as task:
            result = book.record(_usage(), model="m")
        assert result == []
        with pytest.raises(ValueError, match="agent's own error"), book.run("task"):
            raise ValueError("agent's own error")  # the agent's own errors still propagate
    assert task.status == "succeeded"
    assert book.failures >= 3
    assert observer.failures[:2] == ["open task run", "record"]
    assert observer.failures[2].startswith("finalize task run")
    # The cause is named: the ledger's directory cannot be made (a file is in the way).
    assert "could not record: StoreError: cannot create the ledger" in caplog.text
    assert "File exists" in caplog.text


def test_status_events_and_totals_never_raise_on_a_store_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    observer = _Recorder()
    book = Ledger(f"sqlite:///{blocker}/ledger.db", observers=[observer])
    with caplog.at_level(logging.WARNING, logger="llmledger"):
        book.add_status_event("running", task_key="T-1")
        assert book.totals_or_empty("some-run") == Totals()
    assert book.totals_or_empty(None) == Totals()  # no run: nothing read, nothing failed
    assert book.failures == 2
    assert observer.failures == ["add a status event", "read the totals"]
    assert "could not add a status event: StoreError" in caplog.text
    assert "could not read the totals: StoreError" in caplog.text


def test_status_events_are_filed_under_the_runs_key_and_agent(ledger: Ledger) -> None:
    from sqlalchemy import select

    from llmledger.store.schema import task_status_events

    with ledger.run("task", key="T-2", agent="coder") as task:
        ledger.add_status_event("running", run=task, from_status="pending", metadata={"a": 1})
    ledger.add_status_event("skipped", task_key="T-3")
    with ledger.repository.engine.connect() as conn:
        rows = conn.execute(select(task_status_events).order_by(task_status_events.c.id)).all()
    got = [(r.run_id, r.task_key, r.agent_id, r.from_status, r.to_status) for r in rows]
    assert got == [
        (task.id, "T-2", "coder", "pending", "running"),
        (None, "T-3", None, None, "skipped"),
    ]
    assert ledger.totals_or_empty(task.id) == ledger.totals(task.id)


def test_bad_payload_is_logged_counted_and_returns(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmledger"), ledger.run("task"):
        assert ledger.record(b"\x00\x01 not a payload") == []
    assert ledger.failures == 1
    assert "could not record" in caplog.text


def test_observers_see_records_and_finalizations(ledger: Ledger) -> None:
    observer = _Recorder()
    ledger.observers.append(observer)
    with ledger.run("task"):
        ledger.record(_usage(), model="m1")
    assert observer.records == ["m1"]
    assert observer.finalized == ["succeeded"]


def test_what_the_caller_states_wins_over_the_payload(ledger: Ledger) -> None:
    from datetime import datetime

    measured = datetime(2026, 11, 22, 9, 0, 0, 123456, tzinfo=UTC)
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    with ledger.run("task"):
        [call] = ledger.record(
            payload, provider="azure", started_at=measured, duration_ms=812, model="ignored"
        )
    assert call.provider == "azure"
    assert call.started_at == measured
    assert call.duration_ms == 812
    assert call.model == "gpt-4o-2024-08-06"  # the payload's model is kept


def test_annotations_are_written_with_the_terminal_status(ledger: Ledger) -> None:
    with ledger.run("task", metadata={"plan": "p"}) as task:
        task.annotate(num_turns=3, duration_api_ms=15210)
    row = ledger.repository.get_run(task.id)
    assert row is not None
    assert row["metadata"] == {"plan": "p", "num_turns": 3, "duration_api_ms": 15210}


def test_record_an_already_parsed_payload(ledger: Ledger, fixtures_dir: Path) -> None:
    from llmledger.sources import parse_file

    parsed = parse_file(fixtures_dir / "claude-code" / "claude-stream-json.jsonl")
    with ledger.run("task") as task:
        ledger.record(parsed)
    totals = ledger.totals(task.id)
    assert totals.usage.total_tokens == 44068
    assert totals.cost_usd == Decimal("0.07920015")  # the result's reported cost, apportioned
