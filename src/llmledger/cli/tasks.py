"""``llmledger task status|show``, ``velocity`` and ``eta``: write task status events, and
forecast from them (docs/forecast.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from llmledger.cli._app import DbOption, JsonOption, app, echo_json, fail
from llmledger.display import format_money, plain_text, safe_text
from llmledger.errors import StoreError, UsageError
from llmledger.forecast.backtest import Backtest
from llmledger.forecast.lanes import LanesError, LaneSet, resolve_lanes
from llmledger.forecast.report import (
    NoHistory,
    Settings,
    backtest_report,
    eta_report,
    task_history,
    velocity_report,
)
from llmledger.forecast.status import write_status
from llmledger.forecast.velocity import MODES, Mode
from llmledger.store import Repository, open_repository
from llmledger.timespec import parse_instant

__all__ = ["task_app"]

_T = TypeVar("_T")

task_app = typer.Typer(
    help=(
        "Task status events: write a task's transitions (in_progress, ready_to_review, ...) "
        "and list them. `llmledger velocity` and `llmledger eta` forecast from them."
    ),
    no_args_is_help=True,
)
app.add_typer(task_app, name="task")

AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        help="The moment: an ISO time (2026-12-01T09:30Z; naive = local time), a date, or a "
        "duration back from now (12h). Only events at or before it are used. Default: now.",
    ),
]
ProjectOption = Annotated[
    str | None, typer.Option("--project", help="Only the tasks of this project.")
]
LanesOption = Annotated[
    str | None,
    typer.Option(
        "--lanes",
        help="A lanes TOML file, or a built-in set: mcoda (work, review, qa) or plan "
        "(running -> succeeded, what `plan run` writes). Default: "
        "~/.config/llmledger/lanes.toml if it exists, else mcoda.",
    ),
]
WindowOption = Annotated[
    int, typer.Option("--window", min=1, help="Use the last N samples of each lane.")
]
ModeOption = Annotated[
    str,
    typer.Option(
        "--mode",
        help="empirical (from events, else task runs), config (the lanes file's hours), or "
        "mixed (alpha x empirical + (1 - alpha) x config).",
    ),
]
AlphaOption = Annotated[
    float, typer.Option("--alpha", min=0.0, max=1.0, help="The weight of empirical in mixed.")
]


def _at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise fail(f"--at: {exc}") from None


def _lanes(value: str | None) -> LaneSet:
    try:
        return resolve_lanes(value)
    except LanesError as exc:
        raise fail(f"--lanes: {exc}") from None


def _settings(
    lanes: str | None,
    window: int,
    mode: str,
    alpha: float,
    project: str | None,
    agent: str | None = None,
) -> Settings:
    if mode not in MODES:
        raise fail(f"--mode {mode!r}: one of {', '.join(MODES)}")
    chosen: Mode = mode  # type: ignore[assignment]  # checked against MODES just above
    return Settings(_lanes(lanes), window, chosen, alpha, project, agent)


@contextmanager
def _repository(db: str | None) -> Iterator[Repository]:
    try:
        repo = open_repository(db)
    except StoreError as exc:
        raise fail(str(exc)) from None
    try:
        yield repo
    finally:
        repo.engine.dispose()


def _read(action: Callable[[], _T]) -> _T:
    """``action()``; no history is a message and exit 1, a bad value or store exit 2."""
    try:
        return action()
    except NoHistory as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except (StoreError, UsageError, ValueError) as exc:
        raise fail(str(exc)) from None


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} h"


# -- task status, task show ---------------------------------------------------------------


@task_app.command("status")
def task_status_command(
    key: Annotated[str, typer.Argument(help="The task's key (your own id for it).")],
    status: Annotated[str, typer.Argument(help="The status it moved to (your own word).")],
    at: AtOption = None,
    from_status: Annotated[
        str | None,
        typer.Option("--from", help="The status it left. Default: its last known status."),
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="The agent id doing it.")] = None,
    command: Annotated[
        str | None, typer.Option("--command", help="The command that moved it.")
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="The job it belongs to.")] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="The task's project (a key is per project).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write that task KEY moved to STATUS (now, or --at a past moment: events are always read
    in time order). A task never seen is created; a --from the task is not in is stored with a
    warning.

    With --db http(s)://SERVER the event goes to an llmledger service (through the local
    spool, as a remote Ledger sends it); the server fills in --from.

    Examples:

      llmledger task status 1.2 in_progress --agent codex

      llmledger task status 1.2 ready_to_review --at 2026-12-01T15:00Z --project web
    """
    from llmledger.remote import is_remote_url

    moment = _at(at) if at is not None else None
    if is_remote_url(db):
        assert db is not None
        _send_status(db, key, status, from_status, moment, agent, command, job, project, as_json)
        return
    with _repository(db) as repo:
        written = _read(
            lambda: write_status(
                repo,
                key,
                status,
                from_status=from_status,
                at=moment,
                agent_id=agent,
                command_name=command,
                job=job,
                project=project,
            )
        )
    if written.warning:
        typer.secho(f"warning: {written.warning}", err=True, fg=typer.colors.YELLOW)
    if as_json:
        echo_json(
            {
                "key": written.key,
                "project": project,
                "from": written.from_status,
                "to": written.to_status,
                "at": written.at.isoformat(),
                "stored": written.stored,
                "warning": written.warning,
            }
        )
        return
    source = written.from_status or "(new task)"
    typer.echo(
        f"task {plain_text(key)}: {plain_text(source)} -> {plain_text(status)} "
        f"at {_when(written.at)}"
    )


def _send_status(
    url: str,
    key: str,
    status: str,
    from_status: str | None,
    moment: datetime | None,
    agent: str | None,
    command: str | None,
    job: str | None,
    project: str | None,
    as_json: bool,
) -> None:
    from llmledger.ledger import Ledger

    moment = moment or datetime.now(UTC)
    with Ledger(url) as ledger:
        ledger.task_status(
            key,
            status,
            from_status=from_status,
            at=moment,
            agent_id=agent,
            command_name=command,
            job=job,
            project=project,
        )
        sent = ledger.flush()
    if ledger.failures or not sent:
        raise fail(
            f"the event for task {key!r} is not delivered to {url} yet: it waits in the spool "
            f"(`llmledger spool status --db {url}`; `llmledger spool flush` sends it)",
            code=1,
        )
    if as_json:
        echo_json({"key": key, "project": project, "to": status, "at": moment.isoformat()})
        return
    typer.echo(f"task {plain_text(key)}: -> {plain_text(status)} at {_when(moment)}, sent to {url}")


@task_app.command("show")
def task_show_command(
    key: Annotated[str, typer.Argument(help="The task's key.")],
    project: ProjectOption = None,
    at: AtOption = None,
    lanes: LanesOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a task's transitions in time order with the time spent in each status (the
    current one up to now, or --at).

    Example: llmledger task show 1.2 --json
    """
    moment = _at(at)
    lane_set = _lanes(lanes)
    with _repository(db) as repo:
        found = _read(lambda: task_history(repo, key, lane_set, moment, project=project))
    if as_json:
        echo_json(found.to_dict())
        return
    table = Table("at", "from", "to", "time in status", "agent", "command", "job")
    for t in found.transitions:
        e = t.event
        spent = _hours(t.hours) + (" (current)" if t.current and t.hours is not None else "")
        table.add_row(
            _when(e.at),
            safe_text(e.from_status),
            safe_text(e.to_status),
            spent,
            safe_text(e.agent_id),
            safe_text(e.command_name),
            safe_text(e.job),
        )
    console = Console()
    console.print(table)
    spent_by = ", ".join(f"{plain_text(s)} {h:.2f} h" for s, h in found.hours_by_status.items())
    console.print(
        f"task {plain_text(key)}: {plain_text(found.status)}; time by status: {spent_by}",
        markup=False,
        soft_wrap=True,
    )


# -- velocity ------------------------------------------------------------------------------


@app.command("velocity")
def velocity_command(
    at: AtOption = None,
    window: WindowOption = 10,
    mode: ModeOption = "empirical",
    alpha: AlphaOption = 0.5,
    project: ProjectOption = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only lane visits begun by this agent id.")
    ] = None,
    lanes: LanesOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hours per task in each lane (work, review, qa): the samples used (the last --window
    finished visits), their mean and median, the velocity estimates use and its source
    (events, runs, config or mixed).

    Examples:

      llmledger velocity

      llmledger velocity --mode mixed --alpha 0.7 --lanes lanes.toml --json
    """
    moment = _at(at)
    settings = _settings(lanes, window, mode, alpha, project, agent)
    with _repository(db) as repo:
        found = _read(lambda: velocity_report(repo, settings, moment))
    if as_json:
        echo_json({"at": moment.isoformat(), "lanes": [v.to_dict() for v in found]})
        return
    table = Table("lane", "from -> to", "samples", "mean", "median", "velocity", "source")
    for v in found:
        table.add_row(
            safe_text(v.lane),
            f"{safe_text(v.start)} -> {safe_text(v.end)}",
            str(v.samples),
            _hours(v.mean_hours),
            _hours(v.median_hours),
            _hours(v.velocity_hours),
            safe_text(v.source or "unknown"),
        )
    Console().print(table)


# -- eta -----------------------------------------------------------------------------------


def _workers(value: str | None) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        name, sep, count = part.partition("=")
        try:
            number = int(count)
        except ValueError:
            number = 0
        if not sep or not name.strip() or number < 1:
            raise fail(f"--workers {value!r}: write LANE=N,... with N >= 1 (work=2,review=1)")
        found[name.strip()] = number
    return found


def _record(backtest: Backtest) -> str:
    if backtest.mape_pct is None or backtest.bias_pct is None:
        return "no backtest yet: no past completion to check the ETA against"
    direction = "late" if backtest.bias_pct > 0 else "early"
    return (
        f"typically within ±{backtest.mape_pct:.0f} % "
        f"(backtest of {len(backtest.points)} past point(s); "
        f"median bias {abs(backtest.bias_pct):.0f} % {direction})"
    )


@app.command("eta")
def eta_command(
    at: AtOption = None,
    workers: Annotated[
        str | None,
        typer.Option("--workers", help="Workers per lane, e.g. work=2,review=1 (default 1)."),
    ] = None,
    backlog: Annotated[
        int, typer.Option("--backlog", min=0, help="Tasks not started yet, beside the open.")
    ] = 0,
    backtest: Annotated[
        bool,
        typer.Option("--backtest", help="Check the ETA against the last --points completions."),
    ] = False,
    points: Annotated[
        int, typer.Option("--points", min=1, help="Past completions the backtest checks.")
    ] = 10,
    window: WindowOption = 10,
    mode: ModeOption = "empirical",
    alpha: AlphaOption = 0.5,
    project: ProjectOption = None,
    lanes: LanesOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """When the open tasks will all be done, and what they will cost, from the status events
    at or before --at (so a past --at gives what we would have said then). Beside the ETA,
    its measured error: the backtest over the last --points completions.

    Examples:

      llmledger eta --workers work=2 --backlog 5

      llmledger eta --backtest --points 20 --json
    """
    moment = _at(at)
    settings = _settings(lanes, window, mode, alpha, project)
    crew = _workers(workers)
    with _repository(db) as repo:
        if backtest:
            record = _read(
                lambda: backtest_report(repo, settings, moment, workers=crew, points=points)
            )
        else:
            report = _read(
                lambda: eta_report(
                    repo, settings, moment, workers=crew, backlog=backlog, points=points
                )
            )
    if backtest:
        _print_backtest(record, moment, as_json)
        return
    if as_json:
        echo_json(report.to_dict())
        return
    eta = report.eta
    table = Table(
        "lane", "velocity", "source", "workers", "in lane", "to come", "remaining", "finish"
    )
    for lane in eta.lanes:
        v = lane.velocity
        table.add_row(
            safe_text(v.lane),
            _hours(v.velocity_hours),
            safe_text(v.source or "unknown"),
            str(lane.workers),
            str(lane.tasks_in_lane),
            str(lane.tasks_to_come),
            _hours(lane.remaining_hours),
            _when(lane.finish_at),
        )
    console = Console()
    console.print(table)
    if eta.open_tasks == 0:
        line = f"no open tasks at {_when(eta.at)}: nothing to wait for"
    elif eta.finish_at is None:
        line = f"ETA unknown for {eta.open_tasks} open task(s): {eta.reason}"
    else:
        line = (
            f"ETA {_when(eta.finish_at)} (in {eta.hours:.1f} h) for {eta.open_tasks} open task(s)"
        )
    assert report.backtest is not None
    console.print(line, markup=False, soft_wrap=True)
    console.print(_record(report.backtest), markup=False, soft_wrap=True)
    cost = report.cost
    if cost.expected_usd is None:
        console.print(f"cost: unknown ({cost.reason})", markup=False, soft_wrap=True)
    else:
        console.print(
            f"cost: expected {format_money(cost.expected_usd)}, p90 "
            f"{format_money(cost.p90_usd)} ({cost.basis})",
            markup=False,
            soft_wrap=True,
        )


def _print_backtest(record: Backtest, moment: datetime, as_json: bool) -> None:
    if as_json:
        echo_json({"at": moment.isoformat(), **record.to_dict()})
        return
    table = Table("at", "open tasks", "predicted", "actual", "predicted h", "actual h", "error")
    for p in record.points:
        table.add_row(
            _when(p.at),
            str(p.open_tasks),
            _when(p.predicted_at),
            _when(p.actual_at),
            f"{p.predicted_hours:.2f}",
            f"{p.actual_hours:.2f}",
            f"{p.error_pct:+.0f} %",
        )
    console = Console()
    console.print(table)
    console.print(_record(record), markup=False, soft_wrap=True)
