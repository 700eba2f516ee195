"""Writes a client may retry blindly (the HTTP service's): creating a run with a chosen id,
finishing it again, a status event with an id. On SQLite and the real PostgreSQL, including
concurrent retries."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest

from llmledger import Call, Usage, UsageError
from llmledger.errors import ConflictError
from llmledger.store import Repository, open_repository

T = TypeVar("T")


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repository = open_repository(db_url)
    yield repository
    repository.engine.dispose()


def _call(key: str, tokens: int) -> Call:
    return Call(
        Usage(input_tokens=tokens, output_tokens=1),
        source="test",
        model="m",
        dedupe_key=key,
        reported_cost_usd=Decimal("0.5"),
    )


def _at_once(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("not run")] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# -- create_run ------------------------------------------------------------------------------


def test_a_chosen_run_id_makes_creation_idempotent(repo: Repository) -> None:
    assert repo.create_run("task", run_id="client-1", name="first") == "client-1"
    assert repo.create_run("task", run_id="client-1", name="retry") == "client-1"
    assert repo.counts()["runs"] == 1
    run = repo.get_run("client-1")
    assert run is not None
    assert run["name"] == "first"  # the first creation's fields stay


def test_a_chosen_run_id_of_another_kind_is_refused(repo: Repository) -> None:
    repo.create_run("task", run_id="client-1")
    with pytest.raises(UsageError) as caught:
        repo.create_run("session", run_id="client-1")
    assert caught.value.field == "id"
    assert repo.counts()["runs"] == 1
    run = repo.get_run("client-1")
    assert run is not None
    assert run["kind"] == "task"


@pytest.mark.parametrize("run_id", ["", "x" * 33])
def test_a_run_id_the_column_cannot_hold_names_the_field(repo: Repository, run_id: str) -> None:
    with pytest.raises(UsageError) as caught:
        repo.create_run("task", run_id=run_id)
    assert caught.value.field == "id"
    assert repo.counts()["runs"] == 0


def test_concurrent_creations_of_one_chosen_id_make_one_run(repo: Repository) -> None:
    results = _at_once(8, lambda _: repo.create_run("task", run_id="same"))
    assert results == ["same"] * 8
    assert repo.counts()["runs"] == 1


def test_a_run_is_owned_by_this_process_unless_told(repo: Repository) -> None:
    local = repo.get_run(repo.create_run("task"))
    assert local is not None
    assert (local["owner_host"], local["owner_pid"]) == (socket.gethostname(), os.getpid())
    remote = repo.get_run(repo.create_run("task", owner_host="laptop-7", owner_pid=None))
    assert remote is not None
    assert (remote["owner_host"], remote["owner_pid"]) == ("laptop-7", None)


# -- finalize_run ----------------------------------------------------------------------------


def test_finishing_again_with_the_same_status_counts_late_calls(repo: Repository) -> None:
    started = datetime(2026, 12, 1, 10, tzinfo=UTC)
    run = repo.create_run("task", run_id="r", started_at=started)
    repo.add_calls([_call("a", 10)], run_id=run)
    first = repo.finalize_run(
        run, "succeeded", finished_at=started + timedelta(seconds=5), idempotent=True
    )
    assert first.calls == 1
    repo.add_calls([_call("b", 20)], run_id=run)  # a late call of the run
    again = repo.finalize_run(run, "succeeded", metadata={"retry": True}, idempotent=True)
    assert again.calls == 2
    assert again.usage.input_tokens == 30
    assert again.cost_usd == Decimal("1.0")
    row = repo.get_run(run)
    assert row is not None
    assert row["status"] == "succeeded"
    assert row["call_count"] == 2
    assert row["finished_at"] == started + timedelta(seconds=5)  # kept
    assert row["duration_ms"] == 5000
    assert row["metadata"] == {"retry": True}


def test_finishing_with_another_status_conflicts_and_changes_nothing(repo: Repository) -> None:
    run = repo.create_run("task")
    repo.add_calls([_call("a", 10)], run_id=run)
    repo.finalize_run(run, "failed", idempotent=True)
    before = repo.get_run(run)
    repo.add_calls([_call("b", 20)], run_id=run)
    with pytest.raises(ConflictError) as caught:
        repo.finalize_run(run, "succeeded", idempotent=True)
    assert caught.value.field == "status"
    assert isinstance(caught.value, UsageError)
    assert repo.get_run(run) == before


def test_without_idempotent_a_finish_overwrites_as_before(repo: Repository) -> None:
    # Ledger's own resume and repair rely on re-finalizing an ended run.
    run = repo.create_run("task")
    repo.finalize_run(run, "failed")
    repo.finalize_run(run, "succeeded")
    row = repo.get_run(run)
    assert row is not None
    assert row["status"] == "succeeded"


def test_racing_finishes_with_two_statuses_one_wins(repo: Repository) -> None:
    run = repo.create_run("task")
    statuses = ["succeeded", "failed"] * 3
    results = _at_once(
        len(statuses),
        lambda i: repo.finalize_run(run, statuses[i], idempotent=True),  # type: ignore[arg-type]
    )
    row = repo.get_run(run)
    assert row is not None
    for status, result in zip(statuses, results, strict=True):
        if status == row["status"]:
            assert not isinstance(result, BaseException), result
        else:
            assert isinstance(result, ConflictError), result


# -- add_status_event ------------------------------------------------------------------------


def test_a_status_event_with_an_id_is_stored_once(repo: Repository) -> None:
    assert repo.add_status_event("done", task_key="1.1", event_id="ev-1") is True
    assert repo.add_status_event("done", task_key="1.1", event_id="ev-1") is False
    assert repo.add_status_event("done", task_key="1.1", event_id="ev-2") is True
    assert repo.counts()["task_status_events"] == 2


def test_status_events_without_an_id_are_each_stored(repo: Repository) -> None:
    assert repo.add_status_event("done", task_key="1.1") is True
    assert repo.add_status_event("done", task_key="1.1") is True
    assert repo.counts()["task_status_events"] == 2


def test_concurrent_posts_of_one_event_store_it_once(repo: Repository) -> None:
    results = _at_once(8, lambda _: repo.add_status_event("done", task_key="t", event_id="e"))
    assert sorted(results, key=str) == [False] * 7 + [True]
    assert repo.counts()["task_status_events"] == 1


def test_an_event_id_too_long_names_the_field(repo: Repository) -> None:
    with pytest.raises(UsageError) as caught:
        repo.add_status_event("done", task_key="t", event_id="e" * 65)
    assert caught.value.field == "event_id"
    assert repo.counts()["task_status_events"] == 0
