"""Several processes writing one SQLite ledger at once lose nothing and never see
"database is locked"."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from llmledger import Call, Usage
from llmledger.store import open_repository

PROCESSES = 4
CALLS_EACH = 500


def _writer(url: str, worker: int) -> None:
    repo = open_repository(url)
    run = repo.create_run("task", key=f"worker-{worker}")
    for i in range(CALLS_EACH):
        call = Call(
            Usage(input_tokens=i, output_tokens=1), source="test", dedupe_key=f"{worker}:{i}"
        )
        repo.add_calls([call], run_id=run)  # one transaction per call, as record() does
    repo.finalize_run(run, "succeeded")
    repo.engine.dispose()


def test_four_processes_each_writing_500_calls(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_repository(url).engine.dispose()  # create the schema once, before the race
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(url, w)) for w in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=300)
    assert [p.exitcode for p in workers] == [0] * PROCESSES
    repo = open_repository(url)
    counts = repo.counts()
    repo.engine.dispose()
    assert counts["calls"] == PROCESSES * CALLS_EACH
    assert counts["runs"] == PROCESSES
