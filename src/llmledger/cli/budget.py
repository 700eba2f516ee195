"""``llmledger budget``: spending limits enforced before the call (set, list, rm, status)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from llmledger.budgets import (
    Budget,
    BudgetStatus,
    budget_status,
    covered,
    get_budget,
    list_budgets,
    make_budget,
    remove_budget,
    set_budget,
)
from llmledger.cli._app import DbOption, JsonOption, app, echo_json, fail
from llmledger.display import format_money, safe_text
from llmledger.errors import StoreError, UsageError
from llmledger.store import Repository, open_repository

if TYPE_CHECKING:
    from llmledger.reports.filters import Filters
    from llmledger.store.sqlite_reader import Reader

__all__ = ["budget_app", "print_covered_budgets", "status_table"]

budget_app = typer.Typer(
    help=(
        "Budgets: a limit in USD over a window (total, day, week, month in a time zone, or "
        "rolling:<N>h) for the calls a scope selects (agent, workflow, project, model, "
        "provider, source, host). A block budget refuses a reservation (ledger.reserve, the "
        "integrations, `llmledger run`, `plan run`) that would take it over; a warn budget "
        "only warns. See docs/budgets.md."
    ),
    no_args_is_help=True,
)
app.add_typer(budget_app, name="budget")

NameArgument = Annotated[
    str, typer.Argument(help="The budget's name: 1-64 letters, digits, '_', '.', '@', ':', '-'.")
]


def _usage_failure(exc: UsageError) -> typer.Exit:
    option = "NAME" if exc.field == "name" else f"--{exc.field}"
    detail = str(exc).split(": ", 1)[-1]
    return fail(f"{option}: {detail}")


def _open(db: str | None) -> Repository:
    try:
        return open_repository(db)
    except StoreError as exc:
        raise fail(str(exc)) from None


@budget_app.command("set")
def budget_set(
    name: NameArgument,
    limit: Annotated[
        str, typer.Option("--limit", help="The limit in USD per window, above 0 (25, 0.50).")
    ],
    window: Annotated[
        str,
        typer.Option(
            "--window", help="total, day, week (from Monday), month, or rolling:<N>h (rolling:24h)."
        ),
    ] = "total",
    tz: Annotated[
        str | None,
        typer.Option("--tz", help="Time zone of a day/week/month window (Europe/Paris). UTC."),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="KEY=VALUE, repeatable: agent, workflow (a run key and its subtree), project, "
            "model, provider, source, host. None: every call.",
        ),
    ] = None,
    action: Annotated[
        str,
        typer.Option("--action", help="block (refuse calls that would go over) or warn."),
    ] = "block",
    warn: Annotated[
        str,
        typer.Option("--warn", help="Warn at these percentages of the limit (once per window)."),
    ] = "50,80,100",
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify", help='A webhook URL: each warning is POSTed as {"text": ...} (Slack).'
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create or replace a budget.

    Examples:

      llmledger budget set daily-claude --limit 25 --window day --tz Europe/Paris
      --scope agent=claude --action block

      llmledger budget set nightly --limit 5 --window rolling:24h --scope workflow=nightly
      --action warn --warn 80,100 --notify https://hooks.slack.com/services/...
    """
    try:
        budget = make_budget(
            name,
            limit,
            window=window,
            tz=tz,
            scope=scope or (),
            action=action,
            thresholds=warn,
            notify=notify,
        )
    except UsageError as exc:
        raise _usage_failure(exc) from None
    repo = _open(db)
    try:
        replaced = set_budget(repo, budget)
    finally:
        repo.engine.dispose()
    typer.echo(f"{'replaced' if replaced else 'created'} budget {name!r}: {_describe(budget)}")


@budget_app.command("list")
def budget_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the budgets: limit, window, scope, action, thresholds, webhook."""
    repo = _open(db)
    try:
        budgets = list_budgets(repo)
    finally:
        repo.engine.dispose()
    if as_json:
        echo_json({"budgets": [b.to_dict() for b in budgets]})
        return
    if not budgets:
        typer.echo("no budgets; set one with `llmledger budget set NAME --limit 25 --window day`")
        return
    table = Table("name", "limit", "window", "scope", "action", "warn at", "notify")
    for b in budgets:
        table.add_row(
            safe_text(b.name),
            format_money(b.limit_usd),
            _window(b),
            _scope(b),
            b.action,
            ",".join(f"{t}%" for t in b.thresholds) or "-",
            safe_text(b.notify or "-"),
        )
    Console().print(table)


@budget_app.command("rm")
def budget_rm(name: NameArgument, db: DbOption = None) -> None:
    """Remove a budget (and its live reservations). Exit 1 when there is none of that name."""
    repo = _open(db)
    try:
        gone = remove_budget(repo, name)
    finally:
        repo.engine.dispose()
    if not gone:
        typer.secho(f"no budget named {name!r} (see `llmledger budget list`)", err=True)
        raise typer.Exit(1)
    typer.echo(f"removed budget {name!r}")


@budget_app.command("status")
def budget_status_command(
    name: Annotated[str | None, typer.Argument(help="One budget (default: all).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Where each budget stands in its current window: spent, reserved, remaining, the
    window's start and reset, the burn rate ($/h) over the window and the last hour, the
    forecast at the window's end and when the pace crosses the limit (overrun at).

    Calls in scope without a price are counted ("unpriced"): spend the budget cannot see.

    Examples:

      llmledger budget status

      llmledger budget status daily-claude --json
    """
    repo = _open(db)
    try:
        if name is not None:
            found = get_budget(repo, name)
            if found is None:
                raise fail(f"no budget named {name!r} (see `llmledger budget list`)")
            budgets = [found]
        else:
            budgets = list_budgets(repo)
        statuses = [budget_status(repo, b) for b in budgets]
    finally:
        repo.engine.dispose()
    if as_json:
        echo_json({"budgets": [s.to_dict() for s in statuses]})
        return
    if not statuses:
        typer.echo("no budgets; set one with `llmledger budget set NAME --limit 25 --window day`")
        return
    Console().print(status_table(statuses))


def status_table(statuses: list[BudgetStatus]) -> Table:
    """The table of ``budget status`` (also shown under ``daily`` and ``monthly``)."""
    table = Table(
        "budget", "window", "spent", "reserved", "limit", "used", "$/h", "forecast",
        "overrun at", "resets", title="budgets",
    )  # fmt: skip
    for s in statuses:
        spent = format_money(s.spent_usd)
        if s.unpriced_calls:
            spent += f" + {s.unpriced_calls} unpriced"
        table.add_row(
            safe_text(s.budget.name),
            _window(s.budget),
            spent,
            format_money(s.reserved_usd),
            format_money(s.budget.limit_usd),
            f"{s.used_percent:.0f}%",
            format_money(s.burn_usd_per_hour),
            format_money(s.forecast_usd),
            _when(s.overrun_at),
            _when(s.resets_at),
        )
    return table


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _window(budget: Budget) -> str:
    zone = f" {budget.tz}" if budget.tz and budget.window.kind in ("day", "week", "month") else ""
    return f"{budget.window}{zone}"


def _scope(budget: Budget) -> str:
    return safe_text(", ".join(f"{k}={v}" for k, v in budget.scope.items()) or "everything")


def _describe(budget: Budget) -> str:
    return (
        f"{budget.action} at {format_money(budget.limit_usd)} per {_window(budget)} "
        f"for {_scope(budget)}"
    )


def print_covered_budgets(
    reader: Reader, open_repo: Callable[[], Repository], filters: Filters
) -> None:
    """Under a period report's table: each budget whose scope the report covers (every
    filter of the report is one of the budget's scope values), with spent/limit and forecast.
    Prints nothing when the ledger has no budget (one cheap query)."""
    try:
        if not reader.fetch("SELECT 1 FROM budgets LIMIT 1"):
            return
    except Exception:  # a ledger without the table (read-only, older): nothing to show
        return
    repo = open_repo()
    statuses = [budget_status(repo, b) for b in list_budgets(repo) if covered(b, filters)]
    if statuses:
        Console().print(status_table(statuses))
