"""``llmledger runs`` and ``llmledger show``: the run tree and what each part cost."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from llmledger.cli._app import (
    CsvOption,
    DbOption,
    JsonOption,
    app,
    check_output,
    echo_csv,
    echo_json,
    fail,
)
from llmledger.display import format_cost, format_tokens, plain_text, safe_text
from llmledger.errors import StoreError
from llmledger.reports.documents import run_json, runs_json
from llmledger.reports.options import OptionError, time_range
from llmledger.reports.run_tree import RunNode, find_run, load_tree, recent_runs
from llmledger.store import open_repository


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


@app.command("runs")
def runs_command(
    kind: Annotated[
        str | None, typer.Option(help="Only runs of this kind (task, plan, ...).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs started since: 2026-11-01, 7d, 12h.")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Only runs started up to this date (inclusive) or time."),
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs with this status (running, failed, ...).")
    ] = None,
    agent: Annotated[
        str | None, typer.Option(help="Only runs done by this agent id (claude-code, ...).")
    ] = None,
    top: Annotated[bool, typer.Option("--top", help="Only runs with no parent.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    tz: Annotated[str | None, typer.Option(help="Time zone for --since/--until dates.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    as_csv: CsvOption = False,
) -> None:
    """List runs, newest first, with status, duration, tokens and cost (whole subtree).

    Examples:

      llmledger runs --kind task --since 7d

      llmledger runs --status failed --json

      llmledger runs --kind task --csv > tasks.csv
    """
    check_output(as_json, as_csv)
    if limit < 1:
        raise fail(f"--limit {limit}: show at least 1 run")
    try:
        _, since_at, until_at = time_range(since=since, until=until, tz=tz)
    except OptionError as exc:
        raise fail(str(exc)) from None
    try:
        repo = open_repository(db)
        try:
            nodes = recent_runs(
                repo,
                kind=kind,
                since=since_at,
                until=until_at,
                status=status,
                agent=agent,
                top_level=top,
                limit=limit,
            )
        finally:
            repo.engine.dispose()
    except StoreError as exc:
        raise fail(str(exc)) from None
    if as_json:
        echo_json(runs_json(nodes))
        return
    if as_csv:
        echo_csv(runs_json(nodes)["runs"])
        return
    table = Table("id", "kind", "name / key", "status", "started", "duration", "tokens", "cost")
    for node in nodes:
        row = node.row
        label = " / ".join(str(x) for x in (row["name"], row["key"]) if x) or "-"
        table.add_row(
            safe_text(row["id"][:8]),
            safe_text(row["kind"]),
            safe_text(label),
            safe_text(row["status"]),
            row["started_at"].strftime("%Y-%m-%d %H:%M"),
            _duration(row["duration_ms"]),
            format_tokens(node.inclusive.usage.total_tokens),
            format_cost(node.inclusive),
        )
    Console().print(table)


@app.command("show")
def show_command(
    run: Annotated[str, typer.Argument(help="Run id, external key, name, or a unique id prefix.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run's tree: each node's status, attempts, own and inclusive usage and cost.

    Example: llmledger show 1.1   (a task by its key)
    """
    try:
        repo = open_repository(db)
        try:
            run_id = find_run(repo, run)
            tree = load_tree(repo, run_id) if run_id is not None else None
        finally:
            repo.engine.dispose()
    except StoreError as exc:
        raise fail(str(exc)) from None
    if tree is None:
        raise fail(f"no run with id, key, name or id prefix {run!r}; `llmledger runs` lists them")
    if as_json:
        echo_json(run_json(tree))
        return
    rich_tree = Tree(_label(tree))
    _add_children(rich_tree, tree)
    Console().print(rich_tree)


def _label(node: RunNode) -> Text:
    row = node.row
    name = row["name"] or row["key"] or row["id"][:8]
    attempts = f", {node.attempts} attempts" if node.attempts else ""
    own = node.own
    usage = node.inclusive.usage
    parts = [
        f"in {format_tokens(usage.input_tokens)} out {format_tokens(usage.output_tokens)} "
        f"cache r/w {format_tokens(usage.cache_read_tokens)}/"
        f"{format_tokens(usage.cache_write_tokens)}",
        f"cost {format_cost(node.inclusive)}",
    ]
    if own.calls and node.children:
        parts.append(f"own {own.calls} calls {format_cost(own)}")
    # Text, not markup: the names are shown as written, whatever brackets they hold.
    return Text.assemble(
        (plain_text(row["kind"]), "bold"),
        f" {plain_text(name)} ({plain_text(row['status'])}{attempts}) · ",
        " · ".join(parts),
    )


def _add_children(branch: Tree, node: RunNode) -> None:
    for child in node.children:
        _add_children(branch.add(_label(child)), child)
