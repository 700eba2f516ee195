"""Starting an import's reads: a task per planned file, the price data, the worker processes.

Free of SQLAlchemy, like the planning (``plan``): the CLI plans and starts the reads
first, then opens (creates, migrates) the ledger while the workers read, so the workers fork
from a small process and the ledger's setup costs no time of its own.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING

from llmledger.imports.plan import FilePlan
from llmledger.imports.read import FileResult, ReadTask, now_micros, read_file, set_pricer

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.pool import Pool

    from llmledger.pricing import Pricer

__all__ = ["POOL_THRESHOLD_BYTES", "Reading", "forget_in_children", "start_reading"]

#: Above this many bytes to read (and with more than one file), files go to a process pool.
POOL_THRESHOLD_BYTES = 16 * 1024 * 1024


class Reading:
    """Reads under way, in worker processes, or in this process as their results are asked
    for when there is little to read. Close it (or use it as a context manager) to stop the
    workers: files not yet started are then not read."""

    def __init__(
        self,
        plans: list[FilePlan],
        tasks: list[ReadTask],
        *,
        files: int,
        unchanged: int,
        recorded: int,
        pool: Executor | None,
        chunk: int,
    ) -> None:
        self.plans = plans
        self.tasks = tasks
        #: Log files found, and how many of them had not changed since the last import.
        self.files = files
        self.unchanged = unchanged
        #: When the import started (epoch microseconds): every call's ``recorded_at``.
        self.recorded = recorded
        self._pool = pool
        self._results: Iterator[FileResult] = (
            map(read_file, tasks) if pool is None else pool.map(read_file, tasks, chunksize=chunk)
        )

    def results(self) -> Iterator[FileResult]:
        """The result of each task, in task order."""
        return self._results

    def close(self) -> None:
        """Stop the workers (waiting for the files they are reading)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Reading:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def start_reading(
    plans: Sequence[FilePlan],
    *,
    files: int,
    unchanged: int = 0,
    pricer: Pricer | None = None,
    overrides_path: str | None = None,
    workers: int | None = None,
    _share: bool = True,
) -> Reading:
    """Start reading the files ``plans`` name (``files`` were found, ``unchanged`` of them
    needed no reading): with more than :data:`POOL_THRESHOLD_BYTES` to read, in ``workers``
    processes (default: up to two, one per core). ``pricer`` prices the calls read in this
    process; worker processes build their own from ``overrides_path`` (forked ones start
    from a copy of ``pricer``, when given). ``_share=False`` makes every row hold every
    column (see ``ReadTask.share_columns``)."""
    recorded = now_micros()
    tasks = [
        ReadTask(
            path=p.file.path,
            agent=p.file.agent,
            size=p.stat.st_size,
            offset=p.offset,
            line_base=p.line_base,
            session_id=p.file.session_id,
            project=p.file.project,
            overrides_path=overrides_path,
            recorded_at=recorded,
            share_columns=_share,
        )
        for p in plans
    ]
    todo = sum(t.size - t.offset for t in tasks)
    count = workers if workers is not None else min(2, os.cpu_count() or 1)
    pool: Executor | None = None
    chunk = 1
    pooled = count > 1 and len(tasks) > 1 and todo >= POOL_THRESHOLD_BYTES
    if pricer is None and not pooled:
        from llmledger.pricing import Pricer

        pricer = Pricer(overrides_path)
    # Forked workers inherit it; without one, each builds its own (reading the overrides
    # file as it is now, not as an earlier import in this process found it).
    set_pricer(pricer, overrides_path)
    if pooled:
        # Each worker loads the price data itself (about 0.1 s) when it prices its first
        # call: loading it here first would hold up the workers' start by as much, on one
        # core.
        pool = ProcessPoolExecutor(
            max_workers=count, initializer=_start_worker, initargs=(os.getpid(),)
        )
        # Files go out in order and come back in order; chunks keep the pickling cost low.
        chunk = max(1, min(16, len(tasks) // (count * 8)))
    return Reading(
        list(plans),
        tasks,
        files=files,
        unchanged=unchanged,
        recorded=recorded,
        pool=pool,
        chunk=chunk,
    )


#: prctl(2) option: the signal the kernel sends a process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """End this worker when the import that started it ends, however it ends: a worker left
    behind by an import killed with SIGKILL would read on, holding open the database
    connection it inherited (the server would keep the killed import's transaction, and the
    next import would wait for it forever). On Linux the kernel sends SIGKILL at the
    parent's death; elsewhere a thread watches the parent."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def _start_worker(parent: int) -> None:
    _die_with_parent(parent)
    # When the cores are busy, the main process, which settles and writes what the workers
    # read, goes first: what it leaves queued when they finish lengthens the import's end,
    # which runs on one core (the workers' results wait in the queue meanwhile).
    with suppress(OSError):
        os.nice(5)
    # A worker lives for one import. Its cycle collector walked the price data and each
    # file's rows over and over (7% of its time) and found nothing to free; reference
    # counting frees what it reads, and the few objects in cycles (a Codex rollout's parse
    # leaves some) go when the process exits.
    gc.disable()


# -- connections the workers inherit -----------------------------------------------------------

#: Engines whose pooled connections processes forked from this one must leave alone.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
#: In a forked child: the parent's pools, held so that their connections are never closed
#: here (closing one would end the parent's PostgreSQL session, or drop SQLite's locks).
_INHERITED: list[Pool] = []


def forget_in_children(engine: Engine) -> None:
    """Make processes forked from now on (the import's workers) drop ``engine``'s pooled
    connections, which are the parent's: a child never uses them."""
    _ENGINES.add(engine)


def _forget_connections() -> None:
    for engine in list(_ENGINES):
        _INHERITED.append(engine.pool)
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_connections)
