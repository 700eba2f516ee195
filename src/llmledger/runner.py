"""Run one agent CLI command and keep the books on it.

:func:`run_agent` spawns a command (``claude -p ...``, ``codex exec --json ...``, any argv),
passes its stdout and stderr through to the caller byte for byte, keeps a bounded copy of
stdout, recognizes the usage in it with :mod:`llmledger.sources`, and records it under a task
run with the try as an attempt run. Every ending records: exit 0, a failure, a timeout (the
process group is killed and what it printed so far is parsed, so a stream cut off mid-way keeps
its usage), a signal, a cancellation.

The pieces are usable on their own: :func:`run_command` (process handling and capture only)
and :func:`run_attempt` (run and record into an attempt run you opened yourself; the plan
orchestrator uses it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from llmledger.agents import log_source_of
from llmledger.call import Call
from llmledger.errors import ParseError
from llmledger.ledger import Ledger, Run, TerminalRunStatus
from llmledger.sources import Parsed, Summary, parse
from llmledger.totals import Totals

__all__ = [
    "DEFAULT_CAPTURE_LIMIT",
    "USAGE_MARKERS",
    "AgentResult",
    "Completed",
    "attempt_metadata",
    "run_agent",
    "run_attempt",
    "run_command",
]

#: Bytes of stdout kept whole for parsing. Beyond it only lines that can hold usage are kept.
DEFAULT_CAPTURE_LIMIT = 16 * 1024 * 1024
#: A line of agent output that contains none of these cannot carry usage (or the ids that key
#: it) in any format we parse, so it is dropped once the capture is over its limit.
USAGE_MARKERS: tuple[bytes, ...] = (
    b'"usage"',
    b'"modelUsage"',
    b'"stats"',
    b'"total_cost_usd"',
    b"thread.started",
)
#: Exit status after a timeout, as coreutils ``timeout`` reports it.
TIMEOUT_EXIT = 124
_POLL_SECONDS = 0.1
_PUMP_JOIN_SECONDS = 5.0
_CHUNK = 65536


@dataclass(slots=True)
class Completed:
    """How a command ended, and the copy of its stdout kept for parsing."""

    returncode: int
    output: bytes
    duration_ms: int
    timed_out: bool = False
    cancelled: bool = False
    filtered: bool = False  # the output passed the capture limit: only usage lines were kept


@dataclass(slots=True)
class AgentResult:
    """One attempt of an agent command: how it ended and what it recorded.

    ``returncode`` follows :mod:`subprocess`: negative ``-N`` when the process died of signal
    N. :attr:`exit_code` is the status a shell would report for it.
    """

    command: tuple[str, ...]
    status: TerminalRunStatus
    returncode: int | None
    duration_ms: int
    timed_out: bool = False
    cancelled: bool = False
    format: str | None = None
    calls: list[Call] = field(default_factory=list)
    summary: Summary | None = None
    warnings: list[str] = field(default_factory=list)
    run_id: str | None = None
    task_run_id: str | None = None
    totals: Totals = field(default_factory=Totals)

    @property
    def signal(self) -> int | None:
        """The signal that killed the process, if one did."""
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None

    @property
    def exit_code(self) -> int:
        """The child's exit code; 128+N after death by signal N; 124 after a timeout;
        127 when the command could not be started."""
        if self.timed_out:
            return TIMEOUT_EXIT
        if self.returncode is None:
            return 127
        sig = self.signal
        return 128 + sig if sig is not None else self.returncode

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (usage and cost from the ledger's totals of the attempt)."""
        summary = self.summary
        return {
            "command": list(self.command),
            "status": self.status,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "timed_out": self.timed_out,
            "duration_ms": self.duration_ms,
            "format": self.format,
            "calls": len(self.calls),
            "run_id": self.run_id,
            "task_run_id": self.task_run_id,
            "num_turns": summary.num_turns if summary else None,
            "duration_api_ms": summary.duration_api_ms if summary else None,
            "usage": self.totals.to_dict(),
            "warnings": list(self.warnings),
        }


# -- capture ------------------------------------------------------------------------------------


class _Capture:
    """A copy of stdout for parsing, bounded: everything up to ``limit`` bytes, then only the
    lines that contain a usage marker (see :data:`USAGE_MARKERS`).

    Keeping everything first is what makes pretty-printed single documents (Gemini CLI json,
    a pretty Claude result) parse; agent outputs that pass the limit are JSON-lines streams,
    where a line filter loses nothing the parsers use. A marker-less line longer than the
    limit is dropped without being held whole.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._partial = bytearray()
        self._skipping = False  # inside an over-long line with no marker: drop to its end
        self._lock = threading.Lock()
        self.filtered = False

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            if not self.filtered:
                self._buf += chunk
                if len(self._buf) > self._limit:
                    data, self._buf = bytes(self._buf), bytearray()
                    self.filtered = True
                    self._feed_lines(data)
                return
            self._feed_lines(chunk)

    def _feed_lines(self, chunk: bytes) -> None:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start : end + 1]
            if not self._skipping:
                self._partial += piece
            if end < 0:
                break
            if not self._skipping and any(m in self._partial for m in USAGE_MARKERS):
                self._buf += self._partial
            self._partial = bytearray()
            self._skipping = False
            start = end + 1
        if len(self._partial) > self._limit and not any(m in self._partial for m in USAGE_MARKERS):
            self._partial = bytearray()
            self._skipping = True

    def getvalue(self) -> bytes:
        with self._lock:
            if not self.filtered:
                return bytes(self._buf)
            tail = bytes(self._partial)
            keep = tail if any(m in tail for m in USAGE_MARKERS) else b""
            return bytes(self._buf) + keep  # a cut-off last line: the parsers skip it


def _pump(source: IO[bytes], sink: IO[bytes] | None, capture: _Capture | None) -> None:
    """Copy ``source`` to ``sink`` chunk by chunk as it arrives; keep a copy in ``capture``.

    When the sink breaks (the caller closed its end), reading goes on so the agent finishes
    its work and its usage is still recorded.
    """
    fd = source.fileno()
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except OSError:
            break
        if not chunk:
            break
        if capture is not None:
            capture.feed(chunk)
        if sink is not None:
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                sink = None
    with contextlib.suppress(OSError):
        source.close()


def _fileno(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None


# -- processes ----------------------------------------------------------------------------------


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _stop_group(proc: subprocess.Popen[bytes], first: int, grace: float) -> None:
    """Send ``first`` to the process group, SIGKILL it after ``grace`` seconds, and kill any
    member left once the leader is gone (it would hold the output pipe open)."""
    _signal_group(proc.pid, first)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _forwarded_signals(pid: int, received: list[int]) -> Iterator[None]:
    """While the child runs, pass SIGINT/SIGTERM/SIGHUP on to its process group (it has a
    session of its own, so the terminal's Ctrl-C does not reach it directly)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        _signal_group(pid, signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_command(
    command: Sequence[str],
    *,
    timeout: float | None = None,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    stdin: IO[bytes] | int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    cancel: threading.Event | None = None,
    forward_signals: bool = False,
    kill_grace: float = 5.0,
    capture_limit: int = DEFAULT_CAPTURE_LIMIT,
) -> Completed:
    """Run ``command`` in its own process group and return how it ended with its stdout.

    stdout is copied to ``stdout`` (default: this process's stdout) as it arrives, byte for
    byte; stderr goes to ``stderr`` (default: inherited) directly when it is a real file, else
    through a pump. ``stdin`` is inherited unless given. After ``timeout`` seconds, or when
    ``cancel`` is set, the group gets SIGTERM and, ``kill_grace`` seconds later, SIGKILL.
    ``forward_signals`` (main thread only) passes SIGINT/SIGTERM/SIGHUP on to the child; the
    run then counts as cancelled. Raises ``OSError`` when the command cannot be started.
    """
    out_sink = stdout if stdout is not None else sys.stdout.buffer
    err_fd = _fileno(stderr) if stderr is not None else None
    err_arg: int | None = err_fd if stderr is not None and err_fd is not None else None
    if stderr is not None and err_fd is None:
        err_arg = subprocess.PIPE
    capture = _Capture(capture_limit)
    started = time.monotonic()
    proc = subprocess.Popen(
        list(command),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=err_arg,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, out_sink, capture), daemon=True)]
    if err_arg == subprocess.PIPE:
        assert proc.stderr is not None
        pumps.append(threading.Thread(target=_pump, args=(proc.stderr, stderr, None), daemon=True))
    for pump in pumps:
        pump.start()
    received: list[int] = []
    timed_out = cancelled = False
    with _forwarded_signals(proc.pid, received) if forward_signals else contextlib.nullcontext():
        deadline = None if timeout is None else started + timeout
        escalate_at: float | None = None
        while True:
            now = time.monotonic()
            wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - now)
            try:
                proc.wait(max(wait, 0.0))
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                _stop_group(proc, signal.SIGTERM, kill_grace)
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                _stop_group(proc, signal.SIGTERM, kill_grace)
                break
            if received and escalate_at is None:
                escalate_at = now + kill_grace
            elif escalate_at is not None and now >= escalate_at:
                _signal_group(proc.pid, signal.SIGKILL)
    for pump in pumps:
        pump.join(_PUMP_JOIN_SECONDS)
    return Completed(
        returncode=proc.returncode,
        output=capture.getvalue(),
        duration_ms=int((time.monotonic() - started) * 1000),
        timed_out=timed_out,
        cancelled=cancelled or bool(received),
        filtered=capture.filtered,
    )


# -- recording ----------------------------------------------------------------------------------


def _status_of(done: Completed, summary: Summary | None) -> TerminalRunStatus:
    if done.timed_out:
        return "timed_out"
    if done.cancelled:
        return "cancelled"
    if done.returncode != 0:
        return "failed"
    # Claude reports some failures (max turns, an API error) in its result with exit code 0.
    if summary is not None and summary.is_error:
        return "failed"
    return "succeeded"


def run_attempt(
    run: Run,
    command: Sequence[str],
    *,
    model: str | None = None,
    format: str | None = None,
    **options: Any,
) -> AgentResult:
    """Run ``command`` (see :func:`run_command` for ``options``) and record its usage under
    ``run``, an attempt run you opened; set the run's terminal status from how it ended.

    Never raises for the command's own failures: a command that cannot be started ends
    ``failed`` with exit code 127 and a warning; output we do not recognize is recorded as a
    run with no usage and a warning.
    """
    started_at = datetime.now(UTC)
    try:
        done = run_command(command, **options)
    except OSError as exc:
        run.set_status("failed")
        return AgentResult(
            command=tuple(command),
            status="failed",
            returncode=None,
            duration_ms=0,
            warnings=[f"cannot start {command[0]!r}: {exc.strerror or exc}"],
            run_id=run.id,
        )
    result = AgentResult(
        command=tuple(command),
        status="failed",
        returncode=done.returncode,
        duration_ms=done.duration_ms,
        timed_out=done.timed_out,
        cancelled=done.cancelled,
        run_id=run.id,
    )
    if done.filtered:
        result.warnings.append("output passed the capture limit; parsed its usage lines only")
    _record_output(run, done.output, result, model=model, format=format, started_at=started_at)
    result.status = _status_of(done, result.summary)
    run.set_status(result.status)
    return result


def _record_output(
    run: Run,
    output: bytes,
    result: AgentResult,
    *,
    model: str | None,
    format: str | None,
    started_at: datetime,
) -> None:
    if not output.strip():
        result.warnings.append("the command printed nothing on stdout; no usage recorded")
        return
    try:
        parsed = _parse_output(output, format)
    except ParseError as exc:
        result.warnings.append(f"no usage recognized in the output ({exc}); recorded no calls")
        return
    result.format = parsed.format
    result.summary = parsed.summary
    result.warnings.extend(parsed.warnings)
    if parsed.calls:
        result.calls = run.record(parsed, model=model, started_at=started_at)
        if not result.calls:
            result.warnings.append("the ledger could not record the calls (see the log)")
        else:
            _drop_imported_copies(run, parsed, started_at)
    else:
        result.warnings.append(f"{parsed.format}: the output holds no usage yet")


def _drop_imported_copies(run: Run, parsed: Parsed, started_at: datetime) -> None:
    # Agent logs imported while the agent ran hold the same calls: the live record, filed
    # under its task and attempt, is the one kept (the importer skips them from now on).
    log_source = log_source_of(parsed.format)
    if log_source is None or run.ledger.remote is not None:
        return  # a remote ledger's server is not this machine's to delete from
    sessions = {c.session_id for c in parsed.calls if c.session_id}
    if parsed.summary is not None and parsed.summary.session_id:
        sessions.add(parsed.summary.session_id)
    ledger = run.ledger
    ledger._guard(  # like record(): never raised into the caller
        "drop imported copies",
        lambda: ledger.repository.delete_imported_copies(
            log_source,
            message_ids=[c.message_id for c in parsed.calls if c.message_id],
            session_id=next(iter(sessions)) if len(sessions) == 1 else None,
            since=started_at,
            until=datetime.now(UTC),
        ),
    )


def _parse_output(output: bytes, format: str | None) -> Parsed:
    try:
        parsed = parse(output, format=format)
    except ParseError:
        # An agent may print plain-text lines between its JSON lines (a banner, a notice);
        # keep the JSON lines rather than lose the whole stream's usage.
        json_lines = [line for line in output.splitlines() if line.lstrip().startswith(b"{")]
        if not json_lines or len(json_lines) == len(output.splitlines()):
            raise
        parsed = parse(b"\n".join(json_lines), format=format)
        skipped = len(output.splitlines()) - len(json_lines)
        parsed.warnings.append(f"skipped {skipped} non-JSON line(s) in the agent's output")
        return parsed
    # The parser skips what is not JSON (a banner, a notice) and reads the JSON lines.
    if parsed.format == "unknown" or (parsed.skipped and not parsed.calls):
        why = parsed.skipped[0].message if parsed.skipped else "no JSON value"
        raise ParseError(parsed.format, f"nothing readable in the output ({why})")
    skipped = sum(1 for s in parsed.skipped if s.reason == "malformed JSON")
    if skipped:
        parsed.warnings.append(f"skipped {skipped} non-JSON line(s) in the agent's output")
    return parsed


def run_agent(
    command: Sequence[str],
    *,
    ledger: Ledger | None = None,
    task: str | None = None,
    workflow: str | None = None,
    agent: str | None = None,
    model: str | None = None,
    name: str | None = None,
    parent: Run | None = None,
    format: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    **options: Any,
) -> AgentResult:
    """Run an agent CLI command, pass its output through, and record its usage.

    The command runs as attempt 1 of a task run (``key=task``; named ``name``, else the task
    key, else the executable), nested under a workflow run (``key=workflow``) if given, else
    under ``parent`` or the current run. ``ledger`` defaults to ``Ledger()`` (``LLMLEDGER_DB``
    or the default SQLite file). ``options`` go to :func:`run_command` (``timeout``,
    ``stdout``, ``stderr``, ``stdin``, ``env``, ``cwd``, ``forward_signals``, ...).

    >>> result = run_agent(["claude", "-p", "fix it", "--output-format", "json"], task="1.1")
    >>> result.exit_code, result.totals.cost_usd
    """
    if not command:
        raise ValueError("run_agent needs a command to run")
    own = ledger is None
    ledger = ledger or Ledger()
    label = name or task or Path(command[0]).name
    meta = {"command": list(command), **(metadata or {})}
    try:
        with contextlib.ExitStack() as stack:
            flow = None
            if workflow is not None:
                flow = stack.enter_context(
                    ledger.run("workflow", workflow, key=workflow, agent=agent, parent=parent)
                )
            task_run = stack.enter_context(
                ledger.run(
                    "task", label, key=task, agent=agent, parent=flow or parent, metadata=meta
                )
            )
            ledger.add_status_event("running", run=task_run, metadata={"attempt": 1})
            with task_run.attempt(metadata=meta) as attempt:
                result = run_attempt(attempt, command, model=model, format=format, **options)
            task_run.set_status(result.status)
            if flow is not None:
                flow.set_status(result.status)
            result.task_run_id = task_run.id
            ledger.add_status_event(
                result.status,
                run=task_run,
                from_status="running",
                metadata=attempt_metadata(result),
            )
        result.totals = ledger.totals_or_empty(result.run_id)
    finally:
        if own:
            ledger.close()
    return result


def attempt_metadata(result: AgentResult) -> dict[str, Any]:
    """What a status event keeps of an attempt: exit code, format, turns, API time, warnings."""
    meta: dict[str, Any] = {
        "attempt_run_id": result.run_id,
        "exit_code": result.exit_code,
        "format": result.format,
    }
    if result.summary is not None:
        meta["num_turns"] = result.summary.num_turns
        meta["duration_api_ms"] = result.summary.duration_api_ms
    if result.warnings:
        meta["warnings"] = result.warnings
    return meta
