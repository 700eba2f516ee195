"""The status line's run, without Typer: read Claude Code's JSON on stdin, import the new lines
of that session's transcript, and make the line; on any failure, the fallback line and a log
entry (``cli/statusline.py`` is the command; docs/statusline.md).

Typer takes about 90 ms of CPU to import, the status line's whole budget: the console script
(``llmledger.cli.main``) hands a ``statusline`` command line that holds only this command's
options to :func:`fast_main`, which reads them itself; anything else (``--help``, a typo)
goes through Typer.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from llmledger.reports.statusline import SEGMENTS, HookInput, parse_segments, render, status_figures

if TYPE_CHECKING:
    from llmledger.store import Repository
    from llmledger.store.sqlite_reader import Reader, SqliteReader

__all__ = ["DEFAULT_SEGMENTS", "background_import", "fast_main", "status_line"]

#: ``--segments`` by default.
DEFAULT_SEGMENTS = ",".join(SEGMENTS)
#: The log keeps its last ~1 MB: a broken setup fails after every message.
_LOG_LIMIT = 1024 * 1024


class _NoStatus(Exception):
    """A failure the fallback line names (bad input, no transcript)."""


class _Pending(Exception):
    """No ledger yet: the background import is creating it."""


#: What ends a line read while the background import of the new lines runs.
_MARK = "↻"
_UPDATING = f"llmledger: importing the session {_MARK}"


def status_line(
    segments: str = DEFAULT_SEGMENTS,
    *,
    color: bool = True,
    db: str | None = None,
    wait: bool = False,
) -> str:
    """The line to print for the hook JSON on stdin: the ``segments`` (comma-separated) with
    ANSI colors when ``color`` (and NO_COLOR is not set), reading the ledger at ``db``.

    New lines in the transcript are imported first with ``wait``; otherwise the line is read
    from the ledger as it is and a background process imports them (the line then ends in
    ``↻``, and the next one has them). Never raises: a failure gives a short fallback line
    and a log entry."""
    hook: HookInput | None = None
    try:
        chosen = _segments(segments)
        hook = _read_hook()
        line = _line(hook, chosen, color and not os.environ.get("NO_COLOR"), db, wait)
    except _Pending:
        lead = hook.model_name or hook.model_id if hook is not None else None
        line = f"{lead} · {_UPDATING}" if lead else _UPDATING
    except Exception as exc:  # the rule of this command: never raise into the prompt
        line = _fallback(hook, exc)
    return line


def fast_main(argv: Sequence[str]) -> bool:
    """Run ``llmledger statusline ARGS`` when ``argv`` (the arguments after ``statusline``)
    holds only ``--segments``, ``--no-color``, ``--wait`` and ``--db`` (each at most once):
    print the line and return True. False for anything else, which Typer then parses."""
    options: dict[str, str] = {}
    color, wait = True, False
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, equals, value = arg.partition("=")
        if arg == "--no-color" and color:
            color = False
        elif arg == "--wait" and not wait:
            wait = True
        elif name in ("--segments", "--db") and name not in options:
            if not equals:
                if not args or args[0].startswith("-"):
                    return False
                value = args.pop(0)
            options[name] = value
        else:
            return False
    db = options.get("--db") or os.environ.get("LLMLEDGER_DB") or None
    segments = options.get("--segments", DEFAULT_SEGMENTS)
    line = status_line(segments, color=color, db=db, wait=wait)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return True


def _segments(text: str) -> tuple[str, ...]:
    try:
        return parse_segments(text)
    except ValueError as exc:
        raise _NoStatus(f"--segments: {exc}") from exc


def _read_hook() -> HookInput:
    stdin = sys.stdin
    if stdin is None or stdin.closed or stdin.isatty():
        raise _NoStatus("no input on stdin")
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    if not data.strip():
        raise _NoStatus("no input on stdin")
    try:
        return HookInput.parse(data)
    except ValueError as exc:
        raise _NoStatus("invalid input") from exc


def _line(
    hook: HookInput, segments: tuple[str, ...], color: bool, db: str | None, wait: bool
) -> str:
    from llmledger.store.urls import check_url

    check_url(db)
    path = hook.transcript_path
    if path is None:
        raise _NoStatus("no transcript_path in the input")
    if not os.path.isfile(path):
        raise _NoStatus("transcript not found")
    reader, session_id, pending = _import_transcript(db, path, wait)
    figures = status_figures(
        reader, hook, session_id=session_id or hook.session_id, segments=segments
    )
    line = render(figures, segments, color=color)
    return f"{line} {_MARK}" if pending else line


def _import_transcript(db: str | None, path: str, wait: bool) -> tuple[Reader, str | None, bool]:
    """Import what is new in the transcript at ``path`` (nothing at all when it has not
    changed: a stat and one query), now with ``wait``, else in a background process. Returns
    the reader the figures are read through, the session the importer files the transcript
    under, and whether a background import was started."""
    quick = _quick_look(db, path)
    if quick is not None:
        current, session_id, changed = quick
        if changed and not wait:
            _start_background_import(db, path)
        if not changed or not wait:
            return current, session_id, changed
        current.close()  # --wait: the importer's way
    from llmledger.imports.logfiles import discover
    from llmledger.imports.plan import plan_import
    from llmledger.store.sqlite_reader import open_reader
    from llmledger.store.urls import missing_sqlite_file

    files = discover(["claude"], [path])
    if not files:
        raise _NoStatus("transcript not found")
    reader: Reader | None = open_reader(db)
    repo: Repository | None = None
    if reader is None and not missing_sqlite_file(db):
        # PostgreSQL, or a SQLite ledger to migrate: the repository plans and reads.
        from llmledger.store import open_repository

        reader = repo = open_repository(db)
    planned = plan_import(reader, files)
    pending = bool(planned[0]) and not wait
    if pending:
        _start_background_import(db, path)
    elif planned[0]:
        from llmledger.imports.pipeline import run_import

        opened = repo
        run_import(
            db,
            ["claude"],
            None,
            prices=None,  # the overrides file in effect; a broken one is a logged failure
            open_repo=None if opened is None else lambda: opened,
            files=files,
            planned=planned,
        )
    if reader is None:  # no ledger before this run
        if pending:
            raise _Pending
        reader = open_reader(db)
        if reader is None:
            raise _NoStatus("ledger not readable")
    return reader, files[0].session_id, pending


def _quick_look(db: str | None, path: str) -> tuple[SqliteReader, str, bool] | None:
    """The common case without the importer's modules (their dataclasses and pathlib cost
    more than the work): a current SQLite ledger and a transcript at a plain path where the
    session is the file's name. Returns the reader, the session and whether the transcript
    changed since it was imported (what :func:`~llmledger.imports.plan.plan_import` would
    plan: a file it has not seen, or another size, mtime, inode or device); None for
    anything else, which goes the importer's way."""
    from llmledger.store.sqlite_reader import open_reader

    session_id = _plain_session(path)
    if session_id is None:
        return None
    reader = open_reader(db)
    if reader is None:
        return None
    st = os.stat(path)
    rows = reader.fetch(
        "SELECT device, inode, size, mtime_ns FROM import_state WHERE path = ?", [path]
    )
    unchanged = bool(rows) and (
        rows[0][0] in (None, st.st_dev)
        and rows[0][1] in (None, st.st_ino)
        and rows[0][2] == st.st_size
        and rows[0][3] == st.st_mtime_ns
    )
    return reader, session_id, not unchanged


def _plain_session(path: str) -> str | None:
    """The session the importer files the Claude Code transcript at ``path`` under, when the
    path is absolute and normal (the import state's key is then ``path`` itself) and the
    file is a session's own (``projects/<project>/<session>.jsonl``, or not below a
    ``projects`` folder); None for anything else (a sub-agent's file: the importer knows
    those). tests/test_statusline.py keeps this equal to ``imports.logfiles.discover``."""
    if not os.path.isabs(path) or os.path.normpath(path) != path:
        return None
    parts = path.split(os.sep)
    stem = os.path.splitext(parts[-1])[0]
    if "projects" in parts[:-1] and parts[-3:-2] != ["projects"]:
        return None
    if not stem or stem.startswith("agent-"):
        return None
    return stem


def _start_background_import(db: str | None, path: str) -> None:
    """Start ``python -m llmledger.cli.status_hook PATH`` on its own: it outlives this
    process (Claude Code may stop the status line when the next message comes)."""
    env = dict(os.environ)
    if db:
        env["LLMLEDGER_DB"] = db
    argv = [sys.executable, "-m", "llmledger.cli.status_hook", path]
    if hasattr(os, "posix_spawn"):  # cheaper than loading subprocess
        null = os.devnull
        os.posix_spawn(
            sys.executable,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, null, os.O_WRONLY, 0),
            ],
            setsid=True,
        )
        return
    import subprocess

    subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def background_import(path: str) -> None:
    """The background import: wait for any other one to finish (a lock file in the user's
    cache directory), then import what is new in the transcript at ``path`` into the ledger
    ``LLMLEDGER_DB`` names. Failures go to the status line's log."""
    import fcntl

    import platformdirs

    from llmledger._private import make_private_dirs, open_private

    try:
        folder = platformdirs.user_cache_dir("llmledger", appauthor=False)
        make_private_dirs(folder)
        with open_private(os.path.join(folder, "statusline-import.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _import_transcript(os.environ.get("LLMLEDGER_DB") or None, path, True)
    except Exception as exc:
        _log("background import failed", exc)


def _fallback(hook: HookInput | None, exc: BaseException) -> str:
    reason = str(exc) if isinstance(exc, _NoStatus) else "status unavailable"
    _log(reason, exc)
    lead = hook.model_name or hook.model_id if hook is not None else None
    text = f"llmledger: {reason} (see statusline.log)"
    return f"{lead} · {text}" if lead else text


def _log(reason: str, exc: BaseException) -> None:
    """Append the failure and its traceback to the status line's log; never raises."""
    try:
        import traceback

        import platformdirs

        from llmledger._private import make_private_dirs, open_private

        folder = platformdirs.user_log_dir("llmledger", appauthor=False)
        make_private_dirs(folder)
        path = os.path.join(folder, "statusline.log")
        if os.path.exists(path) and os.path.getsize(path) > _LOG_LIMIT:
            os.replace(path, path + ".1")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        trace = "".join(traceback.format_exception(exc))
        with open_private(path, "a") as fh:
            fh.write(f"{stamp} {reason}\n{trace}\n")
    except Exception:  # the log is the last resort: nothing is left to tell
        pass


if __name__ == "__main__":
    background_import(sys.argv[1])
