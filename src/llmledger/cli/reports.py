"""``llmledger daily|weekly|monthly|sessions|blocks|tokens``: reports as queries over the ledger.

Each report first imports what is new in the agents' logs (quietly; ``--no-import`` skips it),
then prints a Rich table or, with ``--json``, the shapes documented in docs/reports.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmledger.agents import AGENTS, SOURCE_OF
from llmledger.cli._app import (
    CsvOption,
    DbOption,
    IgnoreOverridesOption,
    JsonOption,
    app,
    check_output,
    checked_overrides,
    echo_csv,
    echo_json,
    fail,
)
from llmledger.display import format_money, format_tokens, plain_text, safe_text
from llmledger.errors import LedgerError
from llmledger.reports.documents import blocks_json, iso_in, report_json, tokens_json
from llmledger.reports.options import (
    MAX_HOURS,
    MIN_HOURS,
    OptionError,
    block_hours,
    group_by_dimensions,
    report_query,
)
from llmledger.totals import Totals

if TYPE_CHECKING:
    from rich.table import Table

    from llmledger.reports.blocks import Block
    from llmledger.reports.sums import ReportRow
    from llmledger.store import Repository
    from llmledger.store.sqlite_reader import Reader

SinceOption = Annotated[
    str | None,
    typer.Option("--since", "-s", help="From this date or duration back: 2026-06-01, 7d, 12h."),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", "-u", help="Up to this date (inclusive) or time.")
]
TzOption = Annotated[
    str | None,
    typer.Option("--tz", "-z", help="Time zone for dates: an IANA name or UTC (default: local)."),
]
BreakdownOption = Annotated[bool, typer.Option("--breakdown", "-b", help="A row per model.")]
ByProjectOption = Annotated[
    bool,
    typer.Option(
        "--by-project",
        help="A row per project within each period (ccusage's --instances); a period's "
        "rows add up to its total.",
    ),
]
SourceOption = Annotated[
    list[str] | None,
    typer.Option(
        "--source",
        help="Only calls from this source: claude, codex, gemini, or a source name such as "
        "openai_chat_completions. Repeatable.",
    ),
]
ProjectOption = Annotated[
    list[str] | None, typer.Option("--project", help="Only this project. Repeatable.")
]
ModelOption = Annotated[
    list[str] | None, typer.Option("--model", help="Only this model. Repeatable.")
]
AgentOption = Annotated[
    list[str] | None,
    typer.Option("--agent", help="Only this agent id (claude-code, codex, ...). Repeatable."),
]
HostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--host",
        help="Only calls from this machine (the hostname a remote ledger or `import --to` "
        "tagged them with; calls recorded without one match no --host). Repeatable.",
    ),
]
BranchOption = Annotated[
    list[str] | None,
    typer.Option(
        "--branch",
        help="Only calls made on this git branch (as the agent's log records it; calls "
        "with no branch recorded match no --branch). Repeatable.",
    ),
]
CostOption = Annotated[
    str,
    typer.Option(
        "--cost",
        help="auto: the log's own cost where it has one, else computed; calculate: always "
        "from tokens; reported: only logged costs (the rest unpriced).",
    ),
]
NoImportOption = Annotated[
    bool, typer.Option("--no-import", help="Do not import new agent log lines first.")
]


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """The options every report takes, as given on the command line; :func:`_report` adds
    them to each report command, which declares only its own."""

    db: str | None = None
    as_json: bool = False
    as_csv: bool = False
    since: str | None = None
    until: str | None = None
    tz: str | None = None
    source: list[str] | None = None
    project: list[str] | None = None
    model: list[str] | None = None
    agent: list[str] | None = None
    host: list[str] | None = None
    branch: list[str] | None = None
    cost: str = "auto"
    no_import: bool = False
    ignore_overrides: bool = False


#: The command-line option of each :class:`ReportOptions` field.
_OPTIONS: dict[str, object] = {
    "db": DbOption,
    "as_json": JsonOption,
    "as_csv": CsvOption,
    "since": SinceOption,
    "until": UntilOption,
    "tz": TzOption,
    "source": SourceOption,
    "project": ProjectOption,
    "model": ModelOption,
    "agent": AgentOption,
    "host": HostOption,
    "branch": BranchOption,
    "cost": CostOption,
    "no_import": NoImportOption,
    "ignore_overrides": IgnoreOverridesOption,
}


def _report(
    name: str, doc: str | None = None
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``run(options, **own)`` as the report command ``name``: ``--help`` lists
    ``run``'s own options (its parameters after the first) and then every shared option, and
    ``run`` gets the shared ones as one :class:`ReportOptions`. ``doc`` is the help text
    (default: ``run``'s docstring)."""

    def register(run: Callable[..., None]) -> Callable[..., None]:
        kw = inspect.Parameter.KEYWORD_ONLY
        own = list(inspect.signature(run, eval_str=True).parameters.values())[1:]
        shared = [
            p.replace(kind=kw, annotation=_OPTIONS[p.name])
            for p in inspect.signature(ReportOptions).parameters.values()
        ]

        def command(**values: Any) -> None:
            run(ReportOptions(**{n: values.pop(n) for n in _OPTIONS}), **values)

        signature = inspect.Signature([*(p.replace(kind=kw) for p in own), *shared])
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__doc__ = doc or run.__doc__
        command.__name__ = run.__name__
        app.command(name)(command)
        return run

    return register


class _Context:
    """The options every report shares, parsed and checked."""

    def __init__(self, options: ReportOptions) -> None:
        check_output(options.as_json, options.as_csv)
        # Read as the service reads its query parameters (reports/options.py).
        try:
            query = report_query(
                since=options.since,
                until=options.until,
                tz=options.tz,
                source=options.source or (),
                project=options.project or (),
                model=options.model or (),
                agent=options.agent or (),
                host=options.host or (),
                branch=options.branch or (),
                cost=options.cost,
            )
        except OptionError as exc:
            raise fail(str(exc)) from None
        self.tz: tzinfo = query.tz
        self.filters = query.filters
        sources = query.filters.sources
        self.cost = query.cost
        self.db = options.db
        self._repo: Repository | None = None
        self._reader: Reader | None = None
        self._prices: str | None = None
        log_agents = [a for a in AGENTS if not sources or SOURCE_OF[a] in sources]
        if not options.no_import and log_agents:
            # A broken overrides file stops the report before it imports (and prices) a line.
            self._prices = checked_overrides(None, options.ignore_overrides)
            self._import(log_agents)

    def _import(self, agents: list[str]) -> None:
        from llmledger.imports.logfiles import discover
        from llmledger.imports.plan import plan_import

        files = discover(agents)
        if not files:
            return
        try:
            # Finding out that nothing changed is cheap (stat and one query); importing
            # loads the importer, SQLAlchemy and the price data. A ledger file that does not
            # exist yet is created while the import's workers read.
            planned = plan_import(None if self._missing() else self.reader(), files)
            if planned[0]:
                from llmledger.imports.pipeline import run_import

                run_import(
                    self.db,
                    agents,
                    None,
                    prices=self._prices,
                    open_repo=self.repo,
                    files=files,
                    planned=planned,
                )
        except LedgerError as exc:
            warning = f"warning: could not import agent logs first: {plain_text(exc)}"
            typer.secho(warning, err=True, fg=typer.colors.YELLOW)

    def _missing(self) -> bool:
        """Whether the ledger is a SQLite file that does not exist yet."""
        from llmledger.store.urls import missing_sqlite_file

        return self._repo is None and missing_sqlite_file(self.db)

    def repo(self) -> Repository:
        """The ledger, opened (and migrated if needed) once per command."""
        from llmledger.store import open_repository

        if self._repo is None:
            try:
                self._repo = open_repository(self.db)
            except LedgerError as exc:
                raise fail(str(exc)) from None
        return self._repo

    def reader(self) -> Reader:
        """What period reports read through: the SQLite file through the standard library
        when it is current, else the repository."""
        if self._reader is None:
            from llmledger.store.sqlite_reader import open_reader

            self._reader = open_reader(self.db) if self._repo is None else None
            if self._reader is None:
                self._reader = self.repo()
        return self._reader


def _cells(totals: Totals) -> list[str]:
    u = totals.usage
    return [
        format_tokens(u.input_tokens),
        format_tokens(u.output_tokens),
        format_tokens(u.cache_write_tokens),
        format_tokens(u.cache_read_tokens),
        format_tokens(u.total_tokens),
        format_money(totals.cost_usd),
        format_tokens(totals.unpriced_calls) if totals.unpriced_calls else "",
    ]


_TOKEN_HEADERS = (
    "Input",
    "Output",
    "Cache write",
    "Cache read",
    "Total tokens",
    "Cost (USD)",
    "Unpriced calls",
)


def _table(title: str, first: list[str]) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for index, name in enumerate(first):
        table.add_column(name, overflow="fold", no_wrap=index == 0)
    for name in _TOKEN_HEADERS:
        table.add_column(name, justify="right", no_wrap=True)
    return table


def short_model(model: str | None) -> str:
    """A model name as tables show it: ``claude-opus-4-20250514`` -> ``opus-4``."""
    if model is None:
        return "(no model)"
    name = model.removeprefix("claude-")
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() and len(tail) == 8 else name


def _agent_name(subagent: str | None, kind: str | None) -> str:
    """A subagent as the sessions table shows it: ``Explore a1b2c3d``; ``(main)`` for the
    main thread."""
    if subagent is None:
        return "(main)"
    return f"{kind} {subagent}" if kind else subagent


def _print_rows(
    title: str,
    rows: Sequence[ReportRow],
    *,
    breakdown: bool,
    sessions: bool,
    tz: tzinfo,
    by_agent: bool = False,
    by_project: bool = False,
) -> None:
    from rich.console import Console

    if sessions:
        first = ["Session", "Project", "Last activity", "Models"]
    else:
        first = ["Period", "Project", "Models"] if by_project else ["Period", "Models"]
    table = _table(title, first)
    for row in rows:
        lead = (
            [safe_text(row.session_id), safe_text(row.project), iso_in(row.last_at, tz) or "-"]
            if sessions
            else [safe_text(row.period or "(no time)")]
        )
        if by_project:
            lead.append(safe_text(row.project or "(no project)"))
        models = safe_text(", ".join(map(short_model, row.models)))
        table.add_row(*lead, models, *_cells(row.totals))
        if breakdown and by_agent:
            for (sub, kind), t in sorted(row.agents.items(), key=lambda kv: str(kv[0][0] or "")):
                pad = [""] * (len(first) - 1)
                name = safe_text(_agent_name(sub, kind))
                table.add_row(*pad, f"└ {name}", *_cells(t), style="dim")
        elif breakdown:
            for model, t in sorted(row.breakdown.items(), key=lambda kv: str(kv[0])):
                pad = [""] * (len(first) - 1)
                table.add_row(*pad, f"└ {safe_text(short_model(model))}", *_cells(t), style="dim")
    total = Totals.total(r.totals for r in rows)
    table.add_section()
    table.add_row("Total", *([""] * (len(first) - 1)), *_cells(total), style="bold")
    Console().print(table)
    if total.unpriced_calls:
        Console(stderr=True).print(
            f"[yellow]{total.unpriced_calls:,} call(s) have no price: their cost is unknown, "
            "not $0. See `llmledger prices MODEL`.[/yellow]"
        )


def _expand(breakdown: bool) -> str | None:
    # --csv --breakdown: a row per model of each period, carrying the period's columns.
    return "breakdown" if breakdown else None


def _period_command(
    kind: str, ctx: _Context, options: ReportOptions, breakdown: bool, by_project: bool = False
) -> None:
    from llmledger.reports.periods import period_report

    try:
        rows = period_report(
            ctx.reader(),
            kind,
            tz=ctx.tz,
            filters=ctx.filters,
            cost=ctx.cost,
            by_project=by_project,
        )
    except LedgerError as exc:
        raise fail(str(exc)) from None
    if options.as_json:
        echo_json(report_json(rows, tz=ctx.tz, by_project=by_project))
    elif options.as_csv:
        document = report_json(rows, tz=ctx.tz, by_project=by_project)
        echo_csv(document["rows"], expand=_expand(breakdown))
    elif not rows:
        typer.echo(
            "no calls in the ledger for this selection (import logs with `llmledger import`)"
        )
    else:
        title = f"{kind.capitalize()} usage" + (" by project" if by_project else "")
        _print_rows(
            title, rows, breakdown=breakdown, sessions=False, tz=ctx.tz, by_project=by_project
        )
        from llmledger.cli.budget import print_covered_budgets

        print_covered_budgets(ctx.reader(), ctx.repo, ctx.filters)


def _make(kind: str) -> None:
    def run(
        options: ReportOptions,
        breakdown: BreakdownOption = False,
        by_project: ByProjectOption = False,
    ) -> None:
        _period_command(kind, _Context(options), options, breakdown, by_project)

    unit = {"daily": "day", "weekly": "week (Monday to Sunday)", "monthly": "month"}[kind]
    doc = (
        f"Tokens and cost per {unit}, per model with --breakdown.\n\n"
        "Imports what is new in the agents' logs first (--no-import skips it).\n\n"
        f"Examples:\n\n  llmledger {kind} --since 7d\n\n"
        f"  llmledger {kind} --tz UTC --json\n\n"
        f"  llmledger {kind} --source claude --project=-home-dev-alpha --breakdown\n\n"
        f"  llmledger {kind} --by-project --branch main   (per project, on branch main)\n\n"
        f"  llmledger {kind} --csv --breakdown > {kind}.csv   (a row per model per period)"
    )
    _report(kind, doc)(run)


for _kind in ("daily", "weekly", "monthly"):
    _make(_kind)


_BREAKDOWNS = ("model", "agent")


@_report("sessions")
def sessions_command(
    options: ReportOptions,
    breakdown: BreakdownOption = False,
    by: Annotated[
        str | None,
        typer.Argument(
            metavar="[model|agent]",
            help="What --breakdown splits each session by: model (the default) or agent (the "
            "main thread and each Claude Code subagent, by type and id).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Tokens and cost per agent session, with its project and first / last activity. A
    Claude Code subagent's calls count in the session that started it.

    Examples:

      llmledger sessions --since 7d

      llmledger sessions --breakdown agent   (what each subagent cost)

      llmledger sessions --json --tz UTC   (rows hold both breakdowns)
    """
    from llmledger.reports.sessions import sessions_report

    if by is not None and by not in _BREAKDOWNS:
        raise fail(f"unknown breakdown {by!r}: use --breakdown model or --breakdown agent")
    ctx = _Context(options)
    rows = sessions_report(ctx.reader(), filters=ctx.filters, cost=ctx.cost)
    if options.as_json:
        echo_json(report_json(rows, sessions=True, tz=ctx.tz))
    elif options.as_csv:
        echo_csv(report_json(rows, sessions=True, tz=ctx.tz)["rows"], expand=_expand(breakdown))
    elif not rows:
        typer.echo("no sessions in the ledger for this selection")
    else:
        _print_rows(
            "Sessions",
            rows,
            breakdown=breakdown or by is not None,
            sessions=True,
            tz=ctx.tz,
            by_agent=by == "agent",
        )


@_report("blocks")
def blocks_command(
    options: ReportOptions,
    active: Annotated[bool, typer.Option("--active", "-a", help="Only the active block.")] = False,
    recent: Annotated[
        bool,
        typer.Option("--recent", "-r", help="Only blocks of the last 3 days (and the active one)."),
    ] = False,
    token_limit: Annotated[
        str | None,
        typer.Option(
            "--token-limit",
            "-t",
            help="Measure blocks against this many tokens, or 'max' (the most any finished "
            "block used): percent used, and a warning when the active block's projection "
            "passes 80% or the limit.",
        ),
    ] = None,
    hours: Annotated[
        float,
        typer.Option(
            "--session-length",
            "--hours",
            "-n",
            help=f"Block length in hours, {MIN_HOURS:g} to {MAX_HOURS:g}.",
        ),
    ] = 5,
) -> None:
    """5-hour usage windows as ccusage defines them, with the active block's burn rate
    (tokens/min, $/h) and its projection to the end of the window.

    Examples:

      llmledger blocks --recent

      llmledger blocks --active --token-limit max

      llmledger blocks --since 3d --session-length 5 --json
    """
    from llmledger.reports import blocks as report

    try:
        block_hours(hours)
    except OptionError as exc:
        raise fail(str(exc)) from None
    ctx = _Context(options)
    now = datetime.now(UTC)
    reader, filters, cost = ctx.reader(), ctx.filters, ctx.cost
    if active and (token_limit or "").strip().lower() != "max":
        # Only the active block: found without grouping the history (max needs every block).
        current = report.active_block(reader, filters=filters, cost=cost, hours=hours, now=now)
        found = [] if current is None else [current]
    else:
        found = report.blocks(reader, filters=filters, cost=cost, hours=hours, now=now)
    if token_limit is not None:
        try:
            report.set_token_limit(found, report.token_limit_of(token_limit, found))
        except ValueError as exc:
            raise fail(f"--token-limit: {exc}") from None
    if recent:
        found = report.recent_blocks(found, now)
    if active:
        found = [b for b in found if b.is_active]
    if options.as_json:
        echo_json(blocks_json(found, now, ctx.tz))
        return
    if options.as_csv:
        echo_csv(blocks_json(found, now, ctx.tz)["blocks"])
        return
    if not found:
        typer.echo("no active block" if active else "no calls in the ledger for this selection")
        return
    _print_blocks(found, now, ctx.tz)


def _print_blocks(found: Sequence[Block], now: datetime, tz: tzinfo) -> None:
    from rich.console import Console

    limited = any(b.limit for b in found)
    table = _table("Usage blocks", ["Block start", "Status", "Models"])
    if limited:
        table.add_column("% of limit", justify="right", no_wrap=True)
    for b in found:
        if b.is_gap:
            hours_idle = (b.end - b.start).total_seconds() / 3600
            gap = f"gap ({hours_idle:.1f}h)"
            blank = [""] * (len(_TOKEN_HEADERS) + limited)
            table.add_row(iso_in(b.start, tz) or "", gap, "", *blank, style="dim")
            continue
        status = "ACTIVE" if b.is_active else "done"
        models = safe_text(", ".join(map(short_model, b.models)))
        share = b.limit_status(now)
        extra = [f"{share['percent_used']:.1f}%"] if share else [""] * limited
        table.add_row(iso_in(b.start, tz) or "", status, models, *_cells(b.totals), *extra)
    Console().print(table)
    for b in found:
        rate, projection = b.burn_rate(), b.projection(now)
        if rate and projection:
            left = max(0, round(projection["remaining_minutes"]))
            Console().print(
                f"active block: {rate['tokens_per_minute']:,.0f} tokens/min, "
                f"${rate['cost_per_hour']:.2f}/h; {left // 60}h {left % 60:02d}m left; "
                f"projected by {iso_in(b.end, tz)}: "
                f"{projection['total_tokens']:,.0f} tokens, ${projection['cost_usd']:.2f}"
            )
        share = b.limit_status(now) if b.is_active else None
        if share and share["status"] != "ok":
            projected = share["projected_tokens"]
            at = "projected" if projected is not None else "used"
            tokens = projected if projected is not None else b.totals.usage.total_tokens or 0
            percent = share["projected_percent"] or share["percent_used"]
            verb = "exceeds" if share["status"] == "exceeds" else "is past 80% of"
            Console(stderr=True).print(
                f"[yellow]warning: the active block's {at} {tokens:,} tokens "
                f"({percent:.0f}%) {verb} the limit of {share['limit']:,}[/yellow]"
            )


@_report("tokens")
def tokens_command(
    options: ReportOptions,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            "-g",
            help="Comma-separated: project, agent, command, day, model, job, action, "
            "provider, host, branch, cwd, subagent, subagent_type.",
        ),
    ] = "model",
) -> None:
    """Calls, tokens (in / out / cache read / cache write), duration and cost grouped by any
    dimensions; command, action and job are those of the run each call belongs to.

    Examples:

      llmledger tokens --group-by project,model --since 30d

      llmledger tokens -g day,agent --json

      llmledger tokens -g host,model --since 30d   (per machine, on a shared server ledger)

      llmledger tokens -g branch --project=-home-dev-alpha   (what each git branch cost)

      llmledger tokens -g subagent,subagent_type --since 7d   (Claude Code subagents)
    """
    from llmledger.reports.groups import group_tokens

    try:
        dims = group_by_dimensions(group_by)
    except OptionError as exc:
        raise fail(str(exc)) from None
    ctx = _Context(options)
    rows = group_tokens(ctx.repo(), dims, tz=ctx.tz, filters=ctx.filters, cost=ctx.cost)
    if options.as_json:
        echo_json(tokens_json(dims, rows))
        return
    if options.as_csv:
        echo_csv(tokens_json(dims, rows)["rows"])
        return
    from rich.console import Console

    table = _table("Tokens by " + ", ".join(dims), [d.replace("_", " ").capitalize() for d in dims])
    for r in rows:
        table.add_row(*[safe_text(v) for v in r.key.values()], *_cells(r.totals))
    Console().print(table)


__all__ = ["ReportOptions", "blocks_command", "sessions_command", "tokens_command"]
