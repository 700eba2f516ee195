"""Deciding what an import reads: which log files changed since the last import, and from where.

The ledger's ``import_state`` table remembers, per path, the device, inode, size, mtime, the
offset read up to (the last complete newline) and a hash of the first bytes. Each file is
stat'ed: an unchanged file is not opened; a grown Claude Code transcript is read from the saved
offset; a truncated (size < offset) or replaced (other inode, other first bytes) file, or a
whole-file format, is read again from the start.

Free of SQLAlchemy (it reads through :class:`~llmledger.store.sqlite_reader.Reader`), so that a
report can find out cheaply that there is nothing new to import.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmledger.imports.logfiles import LogFile
from llmledger.store.sqlite_reader import Reader

__all__ = ["HEAD_BYTES", "FilePlan", "head_sha256", "plan_import"]

#: Bytes hashed at the start of a file to notice that it was replaced.
HEAD_BYTES = 4096
_STATE = ("path", "device", "inode", "size", "mtime_ns", "offset", "head_sha256", "lines")


def head_sha256(data: bytes) -> str:
    """The hash the importer keeps of a file's first bytes."""
    # Imported here: loading OpenSSL would cost every status line 10-20 ms (docs/statusline.md).
    import hashlib

    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class FilePlan:
    """One file to read: from ``offset`` (after ``line_base`` lines), again from the start
    (``reread``) or for the first time."""

    file: LogFile
    stat: os.stat_result
    offset: int
    line_base: int
    reread: bool


def _state(reader: Reader, paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    columns = ", ".join(f'"{c}"' for c in _STATE)  # "offset" is a keyword on PostgreSQL
    if len(paths) > 50:  # one row per log file: reading them all beats sending the paths
        wanted = set(paths)
        rows = [r for r in reader.fetch(f"SELECT {columns} FROM import_state") if r[0] in wanted]
    else:
        marks = ", ".join("?" * len(paths))
        rows = reader.fetch(f"SELECT {columns} FROM import_state WHERE path IN ({marks})", paths)
    return {row[0]: dict(zip(_STATE, row, strict=True)) for row in rows}


def _head_matches(path: str, length: int, expected: str | None) -> bool:
    if expected is None:
        return False
    try:
        with open(path, "rb") as fh:
            return head_sha256(fh.read(length)) == expected
    except OSError:
        return False


def _decide(file: LogFile, st: os.stat_result, state: dict[str, Any] | None) -> FilePlan | None:
    if state is None:
        return FilePlan(file, st, 0, 0, False)
    same_file = state["inode"] in (None, st.st_ino) and state["device"] in (None, st.st_dev)
    if same_file and st.st_size == state["size"] and st.st_mtime_ns == state["mtime_ns"]:
        return None  # unchanged: not even opened
    offset = int(state["offset"])
    grown = st.st_size > state["size"] or (st.st_size == state["size"] and st.st_size > offset)
    if (
        file.agent == "claude"
        and same_file
        and grown
        and st.st_size >= offset
        and stat.S_ISREG(st.st_mode)  # never open a pipe: the read names it instead
        and _head_matches(file.path, min(HEAD_BYTES, offset), state["head_sha256"])
    ):
        return FilePlan(file, st, offset, int(state["lines"]), False)
    # Truncated, replaced, rewritten in place, or a whole-file format: read it all again.
    return FilePlan(file, st, 0, 0, True)


def plan_import(reader: Reader | None, files: Sequence[LogFile]) -> tuple[list[FilePlan], int]:
    """Which files need reading (and from where), oldest first, and how many are unchanged.

    ``reader`` reads the ledger's import state; None stands for a ledger that does not exist
    yet, where every file is new."""
    stats: list[tuple[LogFile, os.stat_result]] = []
    for file in files:
        try:
            stats.append((file, os.stat(file.path)))
        except OSError:
            continue
    state = {} if reader is None else _state(reader, [f.path for f, _ in stats])
    plans: list[FilePlan] = []
    unchanged = 0
    for file, st in stats:
        plan = _decide(file, st, state.get(file.path))
        if plan is None:
            unchanged += 1
        else:
            plans.append(plan)
    # Older files first, so a copy in a resumed session is filed under the original session.
    plans.sort(key=lambda p: (p.stat.st_mtime_ns, p.file.path))
    return plans, unchanged
