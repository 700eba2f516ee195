"""Run a plan: tasks in dependency order, parallel where allowed, retries as attempts, a
timeout per attempt, a budget checked before every start, and usage kept for all of it.

The run tree is ``plan -> section -> task -> attempt`` (under ``session -> work_item`` for a
pipeline session). Every try of a task is an attempt run with its own calls, so a retry never
overwrites usage; a timed-out or cancelled attempt keeps what its agent printed before it was
killed; parallel tasks record into their own runs. Every task status change is a row in
``task_status_events``.

Ordering: a task starts when the tasks it ``depends_on`` have succeeded and every earlier
task that is not ``parallel`` has finished; a task that is not ``parallel`` also waits for
every task listed before it. So consecutive ``parallel: true`` tasks run side by side (up to
``--parallel N``) and the others run one at a time, in plan order.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from llmledger._private import make_private_dirs, open_private
from llmledger.agents import BY_NAME
from llmledger.ledger import Ledger, Run, TerminalRunStatus
from llmledger.plans.model import Plan, Task
from llmledger.plans.outcome import PlanOutcome, SessionOutcome, TaskOutcome
from llmledger.plans.report import format_task_line, format_usage_line, write_task_log
from llmledger.runner import AgentResult, attempt_metadata, run_attempt
from llmledger.totals import Totals

__all__ = [
    "BIN_ENV",
    "PlanOptions",
    "agent_command",
    "run_plan",
    "run_session",
]

#: Environment variables that override where each agent's executable is.
BIN_ENV = {name: agent.bin_env for name, agent in BY_NAME.items()}
#: Task statuses that let a dependent task start.
_DONE_OK = "succeeded"
_TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled", "skipped", "not_started"})


def agent_executable(agent: str) -> list[str]:
    """The argv prefix that starts ``agent``: ``$LLMLEDGER_<AGENT>_BIN`` (a path, or a command
    line split like a shell would) or the agent's name, looked up on PATH."""
    value = os.environ.get(BIN_ENV[agent], "").strip()
    if not value:
        return [agent]
    return [value] if Path(value).is_file() else shlex.split(value)


def agent_command(task: Task, *, verbose: bool = False) -> list[str]:
    """The command line a task runs: its ``command`` as given, or its agent's standard
    non-interactive invocation with the prompt (Claude: json, or stream-json when verbose)."""
    if task.command is not None:
        return list(task.command)
    assert task.prompt is not None
    assert task.agent is not None
    exe = agent_executable(task.agent)
    model = task.model
    if task.agent == "claude":
        fmt = ["stream-json", "--verbose"] if verbose else ["json"]
        args = ["-p", task.prompt, "--output-format", *fmt]
        args += ["--model", model] if model else []
        return [*exe, *args, *task.args]
    if task.agent == "codex":
        opts = ["--model", model] if model else []
        return [*exe, "exec", "--json", *opts, *task.args, task.prompt]
    args = ["-p", task.prompt, "--output-format", "json"] + (["-m", model] if model else [])
    return [*exe, *args, *task.args]


@dataclass(slots=True)
class PlanOptions:
    """How to run plans. ``max_cost_usd`` limits the whole invocation (the session when there
    is one, else the plan); the plan's own ``budget`` limits the plan."""

    parallel: int = 1
    max_cost_usd: Decimal | None = None
    verbose: bool = False
    kill_grace: float = 5.0
    log_dir: Path | None = None
    echo: Callable[[str], None] = print
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Limit:
    run_id: str
    amount: Decimal
    label: str


class _PlanRun:
    """The scheduler of one plan run (main thread) and its task workers (a thread pool)."""

    def __init__(
        self,
        plan: Plan,
        ledger: Ledger,
        options: PlanOptions,
        parent: Run | None,
        scope: Run | None,
    ) -> None:
        self.plan = plan
        self.ledger = ledger
        self.options = options
        self.parent = parent
        self.scope = scope  # the run --max-cost applies to, when not the plan itself
        self.outcome = PlanOutcome(plan, tasks={t.id: TaskOutcome(t) for t in plan.tasks})
        self.order = plan.tasks
        self.pending: list[Task] = list(self.order)
        self.running: dict[Future[None], Task] = {}
        self.sections: dict[str, tuple[AbstractContextManager[Run], Run]] = {}
        self.limits: list[_Limit] = []
        self.stop: str | None = None  # why no new task starts: budget, failure, cancelled
        self.budget_note: str | None = None
        self.failed_note: str | None = None
        self.plan_run: Run | None = None

    # -- the plan run --------------------------------------------------------------------------

    def run(self) -> PlanOutcome:
        plan, out = self.plan, self.outcome
        meta = {"plan_path": str(plan.path) if plan.path else None, "tasks": len(self.order)}
        with self.ledger.run(
            "plan", plan.name, key=str(plan.path or plan.name), parent=self.parent, metadata=meta
        ) as plan_run:
            self.plan_run = plan_run
            out.run_id = plan_run.id
            self._set_limits(plan_run)
            try:
                self._schedule()
            finally:
                for task in self.pending:
                    self._not_started(task)
                self.pending.clear()
                for sid in list(self.sections):
                    self._close_section(sid)
                out.status, out.reason = self._plan_status()
                plan_run.set_status(out.status)
        out.finished_at = datetime.now(UTC)
        out.totals = self.ledger.totals_or_empty(plan_run.id)
        for sid, rid in out.section_run_ids.items():
            out.section_totals[sid] = self.ledger.totals_or_empty(rid)
        return out

    def _set_limits(self, plan_run: Run) -> None:
        if self.plan.budget.max_cost_usd is not None:
            self.limits.append(_Limit(plan_run.id, self.plan.budget.max_cost_usd, "plan budget"))
        if self.options.max_cost_usd is not None:
            target = self.scope or plan_run
            label = "--max-cost limit" + (" of the session" if self.scope is not None else "")
            self.limits.append(_Limit(target.id, self.options.max_cost_usd, label))

    def _schedule(self) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self.options.parallel)) as pool:
            while True:
                try:
                    if self.stop is None:
                        self._start_ready(pool)
                    if not self.running:
                        return
                    done, _ = wait(self.running, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._collect(future)
                except KeyboardInterrupt:
                    self._interrupt()

    def _interrupt(self) -> None:
        """Ctrl-C: cancel the running attempts (their agents are killed, their usage kept);
        no task starts after this."""
        self.options.cancel.set()
        if self.stop != "cancelled":
            self.stop = "cancelled"
            self.options.echo("interrupted: cancelling the running tasks and writing the reports")

    # -- starting tasks ------------------------------------------------------------------------

    def _start_ready(self, pool: ThreadPoolExecutor) -> None:
        if self.options.cancel.is_set():
            self._interrupt()
            return
        for task in list(self.pending):
            if len(self.running) >= max(1, self.options.parallel):
                return
            state = self._readiness(task)
            if state == "wait":
                if not task.parallel:
                    return  # nothing listed after a waiting sequential task may start
                continue
            if state.startswith("skip:"):
                self.pending.remove(task)
                self._skip(task, state[5:])
                continue
            if self._over_budget(task):
                return
            self.pending.remove(task)
            self._start(task, pool)

    def _readiness(self, task: Task) -> str:
        tasks = self.outcome.tasks
        for dep in task.depends_on:
            status = tasks[dep].status
            if status in _TERMINAL and status != _DONE_OK:
                return f"skip:dependency {dep} {status}"
            if status != _DONE_OK:
                return "wait"
        index = self.order.index(task)
        for earlier in self.order[:index]:
            if (task.parallel and earlier.parallel) or tasks[earlier.id].status in _TERMINAL:
                continue
            return "wait"
        return "ready"

    def _over_budget(self, task: Task | None = None) -> bool:
        if task is not None and self._refused_by_a_budget(task):
            return True
        for limit in self.limits:
            spent = self.ledger.totals_or_empty(limit.run_id).cost_usd or Decimal(0)
            if spent >= limit.amount:
                self.stop = "budget"
                self.budget_note = (
                    f"budget reached: ${spent:.4f} recorded against the {limit.label} "
                    f"of ${limit.amount}"
                )
                self.options.echo(f"{self.budget_note}; no new task starts")
                return True
        return False

    def _refused_by_a_budget(self, task: Task) -> bool:
        """A ``block`` budget (``llmledger budget``) the task falls in is spent."""
        from llmledger.budgets.guard import start_refusal

        refused = start_refusal(
            self.ledger,
            agent=task.agent,
            model=task.model,
            keys=(task.id, task.section_id),
            parent=self.plan_run,
        )
        if refused is None:
            return False
        self.stop = "budget"
        self.budget_note = f"budget reached: {refused}"
        self.options.echo(f"{self.budget_note}; no new task starts")
        return True

    def _start(self, task: Task, pool: ThreadPoolExecutor) -> None:
        section = self._open_section(task.section_id)
        out = self.outcome.tasks[task.id]
        out.status = "running"
        out.started_at = datetime.now(UTC)
        self.running[pool.submit(self._run_task, task, section)] = task

    def _open_section(self, sid: str) -> Run:
        if sid not in self.sections:
            section = self.plan.section(sid)
            scope = self.ledger.run(
                "section",
                section.name,
                key=sid,
                parent=self.plan_run,
                metadata={"tasks": len(section.tasks)},
            )
            run = scope.__enter__()
            self.sections[sid] = (scope, run)
            self.outcome.section_run_ids[sid] = run.id
        return self.sections[sid][1]

    def _skip(self, task: Task, reason: str) -> None:
        out = self.outcome.tasks[task.id]
        out.status, out.reason = "skipped", reason
        self.ledger.add_status_event(
            "skipped",
            task_key=task.id,
            from_status="pending",
            metadata=self._meta(task),
        )
        self.options.echo(f"- {task.id} {task.name}: skipped ({reason})")
        self._maybe_close_section(task.section_id)

    def _not_started(self, task: Task) -> None:
        out = self.outcome.tasks[task.id]
        if out.status != "pending":
            return
        out.status = "not_started"
        out.reason = {
            "budget": self.budget_note,
            "cancelled": "the plan was cancelled",
            "failure": self.failed_note,
        }.get(self.stop or "")

    def _meta(self, task: Task, **extra: Any) -> dict[str, Any]:
        return {"plan": self.plan.name, "section_id": task.section_id, **extra}

    # -- one task, in a worker thread ----------------------------------------------------------

    def _run_task(self, task: Task, section: Run) -> None:
        out = self.outcome.tasks[task.id]
        command = agent_command(task, verbose=self.options.verbose)
        log_path, part_path = self._log_paths(task)
        out.log_path = log_path
        meta = self._meta(task, model=task.model, command=command, max_attempts=task.max_attempts)
        ledger = self.ledger
        try:
            with ledger.run(
                "task", task.name, key=task.id, parent=section, agent=task.agent, metadata=meta
            ) as task_run:
                out.run_id = task_run.id
                ledger.add_status_event(
                    "running", run=task_run, from_status="pending", metadata={"attempt": 1}
                )
                with open_private(part_path, "ab") as sink:  # agent output: owner only
                    self._attempts(task, task_run, command, sink)
                out.status = out.attempts[-1].status if out.attempts else "cancelled"
                task_run.set_status(out.status)
            last = attempt_metadata(out.attempts[-1]) if out.attempts else {}
            ledger.add_status_event(
                out.status,
                run=task_run,
                from_status="running",
                metadata={**last, "attempts": len(out.attempts)},
            )
        finally:
            out.finished_at = datetime.now(UTC)
            if out.run_id is not None:
                out.totals = ledger.totals_or_empty(out.run_id)
            write_task_log(log_path, part_path, out, self.plan)

    def _attempts(self, task: Task, task_run: Run, command: list[str], sink: IO[bytes]) -> None:
        out = self.outcome.tasks[task.id]
        for number in range(1, task.max_attempts + 1):
            if number > 1:
                if self.options.cancel.is_set():
                    return
                if self._over_budget(task):
                    out.reason = f"no retry: {self.budget_note}"
                    return
                self.ledger.add_status_event(
                    "running",
                    run=task_run,
                    from_status="retrying",
                    metadata={"attempt": number},
                )
            sink.write(f"===== attempt {number}: {shlex.join(command)}\n".encode())
            sink.flush()
            if self.options.verbose:
                self.options.echo(f"  {task.id} attempt {number}: {shlex.join(command)[:160]}")
            with task_run.attempt(metadata={"command": command, "timeout": task.timeout}) as run:
                result = run_attempt(
                    run,
                    command,
                    model=task.model,
                    timeout=task.timeout,
                    stdout=sink,
                    stderr=sink,
                    stdin=subprocess.DEVNULL,
                    cancel=self.options.cancel,
                    kill_grace=self.options.kill_grace,
                )
            result.totals = self.ledger.totals_or_empty(run.id)
            out.attempts.append(result)
            self._attempt_footer(task, number, result, sink)
            if result.status in ("succeeded", "cancelled"):
                return
            if number < task.max_attempts:
                self.ledger.add_status_event(
                    "retrying",
                    run=task_run,
                    from_status="running",
                    metadata=attempt_metadata(result),
                )

    def _attempt_footer(
        self, task: Task, number: int, result: AgentResult, sink: IO[bytes]
    ) -> None:
        lines = [f"\n===== attempt {number}: {result.status} (exit {result.exit_code})"]
        lines += [f"===== warning: {w}" for w in result.warnings]
        sink.write(("\n".join(lines) + "\n").encode())
        sink.flush()
        if self.options.verbose:
            self.options.echo(
                f"  {task.id} attempt {number}: {result.status} (exit {result.exit_code}) "
                f"{format_usage_line(result.totals)}"
            )
            for warning in result.warnings:
                self.options.echo(f"  {task.id} attempt {number}: warning: {warning}")

    def _log_paths(self, task: Task) -> tuple[Path, Path]:
        base = self.options.log_dir
        if base is None:
            plan_path = self.plan.path or Path.cwd() / "plan"
            base = plan_path.parent / "logs" / plan_path.stem
        make_private_dirs(base)
        name = "task-" + re.sub(r"[^A-Za-z0-9._-]", "_", task.id)
        part = base / f".{name}.log.part"
        part.unlink(missing_ok=True)
        return base / f"{name}.log", part

    # -- finishing -----------------------------------------------------------------------------

    def _collect(self, future: Future[None]) -> None:
        task = self.running.pop(future)
        out = self.outcome.tasks[task.id]
        error = future.exception()
        if error is not None:
            out.status = "failed"
            out.reason = f"llmledger error: {type(error).__name__}: {error}"
        stop_on_failure = self.plan.defaults.on_failure == "stop" and self.stop is None
        if out.status not in ("succeeded", "cancelled") and stop_on_failure:
            self.stop = "failure"
            self.failed_note = f"task {task.id} {out.status} and on_failure is stop"
        plan_total = self.ledger.totals_or_empty(self.plan_run.id) if self.plan_run else Totals()
        self.options.echo(format_task_line(out, plan_total))
        self._maybe_close_section(task.section_id)

    def _maybe_close_section(self, sid: str) -> None:
        section = self.plan.section(sid)
        if sid in self.sections and all(
            self.outcome.tasks[t.id].status in _TERMINAL for t in section.tasks
        ):
            self._close_section(sid)

    def _close_section(self, sid: str) -> None:
        scope, run = self.sections.pop(sid)
        statuses = [self.outcome.tasks[t.id].status for t in self.plan.section(sid).tasks]
        status: TerminalRunStatus
        if "cancelled" in statuses or self.stop == "cancelled":
            status = "cancelled"
        elif all(s == "succeeded" for s in statuses):
            status = "succeeded"
        elif self.stop == "budget" and ("not_started" in statuses or "pending" in statuses):
            status = "paused_budget"
        else:
            status = "failed"
        self.outcome.section_statuses[sid] = status
        run.set_status(status)
        scope.__exit__(None, None, None)

    def _plan_status(self) -> tuple[TerminalRunStatus, str | None]:
        tasks = self.outcome.tasks.values()
        not_started = [t.task.id for t in tasks if t.status == "not_started"]
        left = f"; not started: {', '.join(not_started)}" if not_started else ""
        if self.stop == "cancelled":
            return "cancelled", f"cancelled (Ctrl-C){left}"
        if self.stop == "budget" and not_started:
            return "paused_budget", f"{self.budget_note}{left}"
        bad = [f"{t.task.id} {t.status}" for t in tasks if t.status != "succeeded"]
        if bad:
            return "failed", "; ".join(bad)
        return "succeeded", None


def run_plan(
    plan: Plan,
    ledger: Ledger,
    options: PlanOptions | None = None,
    *,
    parent: Run | None = None,
    budget_scope: Run | None = None,
) -> PlanOutcome:
    """Run every task of ``plan`` and return the outcome; writes no report (see
    :func:`llmledger.plans.report.write_plan_report`).

    Ctrl-C (KeyboardInterrupt) cancels the running attempts and ends the plan ``cancelled``
    instead of propagating. ``budget_scope`` is the run that ``options.max_cost_usd``
    limits (a session), else the plan run.
    """
    return _PlanRun(plan, ledger, options or PlanOptions(), parent, budget_scope).run()


def run_session(
    plans: Sequence[Plan],
    ledger: Ledger,
    options: PlanOptions | None = None,
    *,
    name: str = "pipeline session",
    on_plan_done: Callable[[PlanOutcome], None] | None = None,
) -> SessionOutcome:
    """Run plans one after another as the work items of one session run.

    ``options.max_cost_usd`` limits the whole session; when it is reached, or on Ctrl-C, the
    remaining work items do not start. ``on_plan_done`` is called after each plan (to write its
    report). Returns the session's outcome; the caller writes the session report, also after
    Ctrl-C.
    """
    options = options or PlanOptions()
    session = SessionOutcome(name=name, plans=list(plans))
    stop: str | None = None
    with ledger.run("session", name, metadata={"work_items": len(plans)}) as session_run:
        session.run_id = session_run.id
        try:
            for plan in plans:
                if options.cancel.is_set():
                    stop = "cancelled"
                    break
                spent = ledger.totals_or_empty(session_run.id).cost_usd or Decimal(0)
                if options.max_cost_usd is not None and spent >= options.max_cost_usd:
                    stop = "budget"
                    session.reason = (
                        f"budget reached: ${spent:.4f} recorded against the session's "
                        f"--max-cost limit of ${options.max_cost_usd}"
                    )
                    break
                with ledger.run(
                    "work_item", plan.name, key=str(plan.path or plan.name), parent=session_run
                ) as item:
                    session.work_item_run_ids.append(item.id)
                    outcome = run_plan(plan, ledger, options, parent=item, budget_scope=session_run)
                    if outcome.status != "running":  # always: run_plan returns it finished
                        item.set_status(outcome.status)
                session.outcomes.append(outcome)
                if on_plan_done is not None:
                    on_plan_done(outcome)
                if outcome.status == "cancelled":
                    stop = "cancelled"
                    break
        except KeyboardInterrupt:
            options.cancel.set()
            stop = "cancelled"
        finally:
            session.status = _session_status(session, stop)
            if stop == "cancelled":
                session.reason = "cancelled (Ctrl-C)"
            session_run.set_status(session.status)
    session.finished_at = datetime.now(UTC)
    session.totals = ledger.totals_or_empty(session_run.id)
    return session


def _session_status(session: SessionOutcome, stop: str | None) -> TerminalRunStatus:
    statuses = [o.status for o in session.outcomes]
    if stop == "cancelled" or "cancelled" in statuses:
        return "cancelled"
    if stop == "budget" or "paused_budget" in statuses:
        return "paused_budget"
    if any(s != "succeeded" for s in statuses):
        return "failed"
    return "succeeded"
