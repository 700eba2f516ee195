"""``llmledger plan run|estimate``: run plans of agent tasks with usage kept, or price them."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from llmledger.cli._app import (
    DbOption,
    IgnoreOverridesOption,
    JsonOption,
    app,
    echo_json,
    fail,
    load_pricer,
)
from llmledger.display import plain_text, safe_text
from llmledger.errors import StoreError
from llmledger.ledger import Ledger
from llmledger.plans.estimate import estimate_plan
from llmledger.plans.model import Plan, PlanError, load_plan
from llmledger.plans.orchestrator import PlanOptions, agent_command, run_plan, run_session
from llmledger.plans.outcome import PlanOutcome
from llmledger.plans.report import (
    SESSION_REPORT,
    format_usage_line,
    plan_report,
    report_path_for,
    session_report,
    write_json,
)

plan_app = typer.Typer(
    help="Run plans of agent tasks with usage kept per attempt, task, section and plan.",
    no_args_is_help=True,
)
app.add_typer(plan_app, name="plan")

#: Exit status of ``plan run`` by the final status.
EXIT_CODES = {"succeeded": 0, "failed": 1, "paused_budget": 3, "cancelled": 130}

_RUN_EPILOG = (
    "Examples:\n\n"
    "  llmledger plan run plan.yaml\n\n"
    "  llmledger plan run plan.yaml --parallel 3 --max-cost 5\n\n"
    "  llmledger plan run work-items/ --max-cost 20   (a pipeline session)\n\n"
    "  llmledger plan run plan.yaml --dry-run\n\n"
    "Exit status: 0 succeeded, 1 a task failed, 2 invalid plan, 3 paused by the budget, "
    "130 cancelled (Ctrl-C)."
)


def _echo(line: str) -> None:
    typer.echo(line)


def _echo_err(line: str) -> None:
    typer.echo(line, err=True)


def _money(value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.lstrip("$"))
    except InvalidOperation:
        raise fail(f"--max-cost: not an amount in US dollars: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise fail(f"--max-cost: must be zero or more, got {value!r}")
    return amount


def plan_files(paths: list[Path]) -> tuple[list[Path], bool]:
    """The plan files named by ``paths`` (a directory holds its ``*.yaml``/``*.yml`` files and
    ``*/plan.yaml``), and whether they form a pipeline session (several, or a directory)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            found += sorted([*path.glob("*/plan.yaml"), *path.glob("*/plan.yml")])
            if not found:
                raise fail(f"{path}: no plan files (*.yaml, */plan.yaml) in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise fail(f"{path}: no such plan file or directory")
    session = len(files) > 1 or any(p.is_dir() for p in paths)
    return [f.resolve() for f in files], session


def _load_all(files: list[Path]) -> list[Plan]:
    try:
        return [load_plan(f) for f in files]
    except PlanError as exc:
        raise fail(str(exc)) from None


def _refuse_newer_ledger(ledger: Ledger) -> None:
    # A ledger a newer llmledger wrote takes no calls: stop before any agent starts (its
    # StoreError ends the command with the message). A store that cannot be reached is left
    # to record(), which logs each loss.
    from llmledger.store.engine import NewerLedgerError

    try:
        ledger.repository  # noqa: B018 - opening it is the check
    except NewerLedgerError:
        raise
    except Exception:  # an unreachable store: the plan runs, each loss is logged
        pass


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a plan like Ctrl-C does: running attempts cancelled, reports written."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@plan_app.command("run", epilog=_RUN_EPILOG)
def plan_run(
    plans: Annotated[
        list[Path], typer.Argument(help="Plan files, or directories of them (work items).")
    ],
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, help="Tasks marked parallel: true run N at a time.")
    ] = 1,
    max_cost: Annotated[
        str | None,
        typer.Option(
            "--max-cost",
            help="Stop starting tasks when the recorded spend reaches this many US dollars "
            "(of the whole session when there are several plans).",
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Claude's stream-json output; a line per attempt."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the commands; run nothing.")
    ] = False,
    log_dir: Annotated[
        Path | None,
        typer.Option("--log-dir", help="Task logs here (default: logs/<plan> beside the plan)."),
    ] = None,
    session_name: Annotated[
        str | None, typer.Option("--session-name", help="Name of the pipeline session run.")
    ] = None,
    session_report_path: Annotated[
        Path | None,
        typer.Option(
            "--session-report",
            help=f"Where to write {SESSION_REPORT} (default: the directory of the plans).",
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
    ignore_overrides: IgnoreOverridesOption = False,
) -> None:
    """Run plans: tasks in dependency order, parallel where allowed, retried as attempts,
    each attempt under a timeout, with usage recorded for every attempt (also failed,
    timed-out and cancelled ones).

    After each task a line shows its cost, tokens, cache hit rate and the running plan total.
    usage-report.json is written beside each plan, and a log file per task (its header
    carries the task's usage). Several plans, or a directory, run as the work items of one
    pipeline session, which writes session-usage-report.json when it stops (Ctrl-C included).
    """
    files, is_session = plan_files(plans)
    loaded = _load_all(files)
    limit = _money(max_cost)
    if dry_run:
        _dry_run(loaded, verbose, as_json)
        return
    pricer = load_pricer(None, ignore_overrides)
    echo: Callable[[str], None] = _echo_err if as_json else _echo
    options = PlanOptions(
        parallel=parallel, max_cost_usd=limit, verbose=verbose, log_dir=log_dir, echo=echo
    )
    parents = [f.parent for f in files]
    report_paths = [report_path_for(f, shared_dir=parents.count(f.parent) > 1) for f in files]
    written: dict[str, Path] = {}

    def write_plan(outcome: PlanOutcome) -> None:
        path = report_paths[loaded.index(outcome.plan)]
        write_json(path, plan_report(outcome))
        written[outcome.plan.name] = path
        _print_summary(outcome, path, echo)

    try:
        with Ledger(db, pricer=pricer) as ledger, _sigterm_as_interrupt():
            _refuse_newer_ledger(ledger)
            if not is_session:
                outcome = run_plan(loaded[0], ledger, options)
                write_plan(outcome)
                final, document = outcome.status, plan_report(outcome)
            else:
                name = session_name or _default_session_name(plans)
                session = run_session(loaded, ledger, options, name=name, on_plan_done=write_plan)
                document = session_report(session, report_paths)
                target = session_report_path or _session_dir(plans, files) / SESSION_REPORT
                write_json(target, document)
                echo(
                    f"session {session.status}: {format_usage_line(session.totals)} "
                    f"over {len(session.outcomes)} work item(s); report: {target}"
                )
                if session.reason:
                    echo(f"  {session.reason}")
                final = session.status
    except StoreError as exc:
        raise fail(str(exc)) from None
    if as_json:
        echo_json(document)
    raise typer.Exit(EXIT_CODES.get(final, 1))


def _default_session_name(paths: list[Path]) -> str:
    if len(paths) == 1:
        return paths[0].resolve().name
    return "pipeline session"


def _session_dir(paths: list[Path], files: list[Path]) -> Path:
    if len(paths) == 1 and paths[0].is_dir():
        return paths[0]
    return Path(os.path.commonpath([str(f.parent) for f in files]))


def _print_summary(outcome: PlanOutcome, report: Path, echo: Callable[[str], None]) -> None:
    counts: dict[str, int] = {}
    for task in outcome.tasks.values():
        counts[task.status] = counts.get(task.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    echo(f"plan {outcome.plan.name!r} {outcome.status}: {parts}")
    echo(f"  total {format_usage_line(outcome.totals)}")
    for section in outcome.plan.sections:
        totals = outcome.section_totals.get(section.id)
        if totals is not None:
            echo(f"  section {section.id} {section.name}: {format_usage_line(totals)}")
    if outcome.reason:
        echo(f"  {outcome.reason}")
    echo(f"  report: {report}")


def _dry_run(plans: list[Plan], verbose: bool, as_json: bool) -> None:
    document: list[dict[str, Any]] = []
    for plan in plans:
        tasks: list[dict[str, Any]] = []
        for task in plan.tasks:
            tasks.append(
                {
                    "id": task.id,
                    "section_id": task.section_id,
                    "name": task.name,
                    "agent": task.agent,
                    "model": task.model,
                    "command": agent_command(task, verbose=verbose),
                    "depends_on": list(task.depends_on),
                    "parallel": task.parallel,
                    "max_attempts": task.max_attempts,
                    "timeout": task.timeout,
                }
            )
        budget = plan.budget.max_cost_usd
        document.append(
            {
                "plan_name": plan.name,
                "plan_path": str(plan.path),
                "budget_usd": None if budget is None else float(budget),
                "on_failure": plan.defaults.on_failure,
                "tasks": tasks,
            }
        )
    if as_json:
        echo_json(document)
        return
    for entry in document:
        typer.echo(f"plan {entry['plan_name']!r} ({entry['plan_path']}): valid")
        for t in entry["tasks"]:
            flags = " parallel" if t["parallel"] else ""
            deps = f" after {', '.join(t['depends_on'])}" if t["depends_on"] else ""
            typer.echo(
                f"  {t['id']} {t['name']}{flags}{deps} · up to {t['max_attempts']} attempt(s), "
                f"timeout {t['timeout'] or 'none'}s\n    $ {shlex.join(t['command'])}"
            )


@plan_app.command("estimate")
def plan_estimate(
    plan_path: Annotated[Path, typer.Argument(help="The plan file.", metavar="PLAN.yaml")],
    as_json: JsonOption = False,
    db: DbOption = None,
    ignore_overrides: IgnoreOverridesOption = False,
) -> None:
    """Expected cost of a plan before running it: per task the median and p90 of past runs
    with the same task name, agent and model in the ledger, else the pre-run estimate of the
    prompt (a floor: it counts the prompt, not the agent's turns). Each task says which.
    Beside it, the expected duration: per task the median of its past attempts (same task
    key), else unknown; the plan's is their sum, one task at a time.

    Example: llmledger plan estimate plan.yaml --json
    """
    try:
        plan = load_plan(plan_path)
    except PlanError as exc:
        raise fail(str(exc)) from None
    pricer = load_pricer(None, ignore_overrides)
    try:
        with Ledger(db, pricer=pricer) as ledger:
            result = estimate_plan(plan, ledger.repository, pricer=ledger.pricer)
    except StoreError as exc:
        raise fail(str(exc)) from None
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("task", "name", "basis", "expected", "p90 / high", "duration", "note")
    for t in result.tasks:
        table.add_row(
            safe_text(t.task_id),
            safe_text(t.name),
            safe_text(t.basis),
            _usd(t.expected_usd),
            _usd(t.p90_usd),
            _hours(t.expected_hours),
            safe_text(t.note or ""),
        )
    console = Console()
    console.print(table)
    unknown = f" ({result.unknown} task(s) unknown)" if result.unknown else ""
    console.print(
        f"plan {plain_text(repr(plan.name))}: expected {_usd(result.expected_usd)}, "
        f"p90 {_usd(result.p90_usd)}{unknown}; duration {_hours(result.expected_hours)}"
        f"{_untimed(result.unknown_durations)}",
        markup=False,
    )
    sys.stdout.flush()


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _hours(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} h"


def _untimed(count: int) -> str:
    return f" ({count} task(s) never run before: not counted)" if count else ""


__all__ = ["EXIT_CODES", "plan_app", "plan_files"]
