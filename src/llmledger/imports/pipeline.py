"""The import from start to end: find the log files, plan what to read, start the reads,
open the ledger, then settle copies and write everything in one transaction.

Until the reads have started, nothing here loads SQLAlchemy: the worker processes fork from a
small process, and a ledger is created or migrated while they read.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from llmledger.agents import AGENTS, BY_NAME, SOURCE_OF
from llmledger.imports.logfiles import LogFile, discover
from llmledger.imports.plan import FilePlan, plan_import
from llmledger.imports.read import FileResult
from llmledger.imports.rows import MESSAGE_ID, SESSION_ID
from llmledger.imports.summary import MAX_ERRORS, ImportSummary
from llmledger.imports.workers import Reading, forget_in_children, start_reading

if TYPE_CHECKING:
    from llmledger.pricing import Pricer
    from llmledger.store.repository import Repository

__all__ = ["Progress", "import_logs", "run_import"]

#: Called with (bytes read, bytes to read) as files complete.
Progress = Callable[[int, int], None]


def import_logs(
    repo: Repository,
    agents: Iterable[str] = AGENTS,
    paths: Sequence[str | Path] | None = None,
    *,
    pricer: Pricer | None = None,
    overrides_path: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    files: Sequence[LogFile] | None = None,
    reading: Reading | None = None,
) -> ImportSummary:
    """Import what is new in the agents' logs into the ledger and say what was done.

    ``agents`` are names from :data:`llmledger.agents.AGENTS`; ``paths`` restricts the import
    to those files or directories (default: where each agent writes). ``pricer`` prices calls
    read in this process (worker processes build their own from ``overrides_path``).
    ``progress`` is called with (bytes read, bytes to read) as files complete. Bad lines never
    abort the import: they are counted in ``skipped`` and the first few reported in ``errors``.

    ``reading`` is the reads of an import already planned and started (see
    :func:`~llmledger.imports.workers.start_reading`); the other arguments then do nothing.
    """
    forget_in_children(repo.engine)
    if reading is None:
        found = list(files) if files is not None else discover(agents, paths)
        plans, unchanged = plan_import(repo, found)
        if not plans:
            return ImportSummary(files=len(found), files_skipped_unchanged=unchanged)
        reading = start_reading(
            plans,
            files=len(found),
            unchanged=unchanged,
            pricer=pricer,
            overrides_path=overrides_path,
            workers=workers,
        )
    with reading:
        return _import(repo, reading, progress)


def run_import(
    db: str | None,
    agents: Iterable[str],
    paths: Sequence[str | Path] | None = None,
    *,
    prices: str | None = None,
    open_repo: Callable[[], Repository] | None = None,
    files: Sequence[LogFile] | None = None,
    planned: tuple[list[FilePlan], int] | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import into the ledger at ``db`` what is new in the logs of ``agents`` (under
    ``paths``), pricing with the overrides file ``prices``; returns the summary.

    ``files`` are the log files already found (else they are discovered) and ``planned`` what
    to read of them (else the import state decides). ``open_repo`` opens the ledger (default:
    open ``db``). It is opened once the reads have started, so that workers read while the
    ledger is created or migrated."""
    found = list(files) if files is not None else discover(agents, paths)
    opened: Repository | None = None
    if planned is None:
        if open_repo is None:
            planned, opened = _plan_before_opening(db, found)
        else:
            opened = open_repo()
            planned = plan_import(opened, found)
    plans, unchanged = planned
    if not plans:
        return ImportSummary(files=len(found), files_skipped_unchanged=unchanged)
    if opened is not None:
        # Opened to plan (PostgreSQL): the workers forked next must not use its connection.
        forget_in_children(opened.engine)
    with start_reading(
        plans, files=len(found), unchanged=unchanged, overrides_path=prices
    ) as reading:
        from llmledger.store import open_repository

        if opened is None:
            opened = open_repository(db) if open_repo is None else open_repo()
        return import_logs(opened, progress=progress, reading=reading)


def _plan_before_opening(
    db: str | None, found: Sequence[LogFile]
) -> tuple[tuple[list[FilePlan], int], Repository | None]:
    """Plan an import without opening the ledger where that is cheap: a SQLite file that does
    not exist yet holds no import state, and a current one is read through the standard
    library. Otherwise (PostgreSQL, a ledger to migrate) the opened repository plans, and is
    returned beside the plan."""
    from llmledger.store import open_repository
    from llmledger.store.sqlite_reader import open_reader
    from llmledger.store.urls import missing_sqlite_file

    if missing_sqlite_file(db):
        return plan_import(None, found), None
    reader = open_reader(db)
    if reader is not None:
        try:
            return plan_import(reader, found), None
        finally:
            reader.close()
    repo = open_repository(db)
    return plan_import(repo, found), repo


def _import(repo: Repository, reading: Reading, progress: Progress | None) -> ImportSummary:
    with _cycle_collector_paused():
        # The collector resumes once the import's rows and rankings are freed, which the
        # first collection would otherwise walk.
        return _import_rows(repo, reading, progress)


def _import_rows(repo: Repository, reading: Reading, progress: Progress | None) -> ImportSummary:
    # SQLAlchemy is loaded here, once the reads have started.
    from llmledger.imports.dedupe import Dedupe, legacy_codex_keys
    from llmledger.imports.writer import (
        RollupSums,
        Writer,
        bulk_load,
        count_calls,
        delete_calls,
        end_bulk_load,
        no_calls_yet,
        save_state,
    )
    from llmledger.store.engine import rollback_journal
    from llmledger.store.types import micros_to_datetime

    summary = ImportSummary(files=reading.files, files_skipped_unchanged=reading.unchanged)
    plans, tasks, recorded = reading.plans, reading.tasks, reading.recorded
    total_bytes = sum(t.size - t.offset for t in tasks)
    by_path = {p.file.path: p for p in plans}
    results: dict[str, FileResult] = {}
    skipped: Counter[str] = Counter()
    with (
        repo.engine.connect() as conn,
        rollback_journal(conn, no_calls_yet(conn)),
        conn.begin(),
    ):
        sources = sorted({SOURCE_OF[p.file.agent] for p in plans})
        if conn.dialect.name == "sqlite":
            # The calls indexes are updated in random key order: a larger page cache keeps
            # their pages in memory for the length of the import.
            conn.exec_driver_sql("PRAGMA cache_size = -131072")
        before = count_calls(conn)
        bulk = before == 0 and conn.dialect.name == "sqlite"
        dropped = bulk_load(conn) if bulk else []
        dedupe = Dedupe(conn, sources)
        writer = Writer(conn, summary, bulk=bulk)
        # A bulk load writes the roll-up from the rows' own sums (or rebuilds it at the end).
        sums: RollupSums | None = RollupSums() if bulk else None
        done_bytes = 0
        codex_sessions: set[str] = set()
        for task, result in zip(tasks, reading.results(), strict=True):
            plan = by_path[task.path]
            results[task.path] = result
            done_bytes += task.size - task.offset
            _account(summary, skipped, plan, result)
            dedupe.load_stored(r[MESSAGE_ID] for r in result.rows if r[MESSAGE_ID])
            dedupe.load_telemetry(result.rows)
            meta = {
                "project": plan.file.project,
                "cwd": result.cwd,
                "source": SOURCE_OF[plan.file.agent],
                "agent": BY_NAME[plan.file.agent].agent_id,
            }
            if plan.file.agent == "codex" and dedupe.check_store:
                codex_sessions.update(r[SESSION_ID] for r in result.rows if r[SESSION_ID])
            kept, replacing = dedupe.filter(result.rows, result.info)
            summary.duplicates += len(result.rows) - len(kept) - len(replacing)
            if replacing:
                sums = None  # a copy replaces a call summed before: rebuild the roll-up
            if sums is not None:
                sums.add(kept, result.shared)
            writer.extend(kept, meta, plan.file.session_id, replacing, result.shared)
            result.rows = []
            result.info = []
            if progress is not None:
                progress(done_bytes, total_bytes)
        writer.flush()
        if writer.refused:
            sums = None  # it summed the refused rows too: rebuild the roll-up
        if sums is not None:
            sums.start()
        for index in dropped:
            index.create(conn)
        writer.write_late()
        dedupe.delete.update(legacy_codex_keys(conn, codex_sessions))
        deleted = delete_calls(conn, dedupe.delete) if dedupe.delete else 0
        summed = None if sums is None else sums.result()
        if bulk:
            end_bulk_load(conn, summed if not deleted else None)
        after = count_calls(conn)
        save_state(conn, plans, results, micros_to_datetime(recorded) or datetime.now(UTC))
    if writer.refused:
        skipped["not stored"] += writer.refused
        summary.calls_seen -= writer.refused
    summary.calls_added = max(0, after - before)
    summary.calls_updated = max(0, writer.changes - (after - before) - deleted)
    summary.duplicates = max(0, summary.calls_seen - summary.calls_added - summary.calls_updated)
    summary.skipped = dict(skipped)
    return summary


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    # An import holds hundreds of thousands of rows and copy rankings (tuples, lists) for its
    # whole length; the cycle collector would walk them again at every full collection (a
    # fifth of the main process's time on the benchmark tree) and find nothing to free:
    # reference counting frees them.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _account(
    summary: ImportSummary, skipped: Counter[str], plan: FilePlan, result: FileResult
) -> None:
    summary.files_read += 1
    summary.files_reread += int(plan.reread)
    summary.bytes_read += plan.stat.st_size - plan.offset
    summary.lines += result.lines
    summary.calls_seen += result.calls_seen
    skipped.update(result.skipped)
    if result.failed is not None:
        skipped[result.failed_reason] += 1
        if len(summary.errors) < MAX_ERRORS:
            summary.errors.append(result.failed)
    for error in result.errors:
        if len(summary.errors) < MAX_ERRORS:
            summary.errors.append(error)
