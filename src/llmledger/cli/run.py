"""``llmledger run -- COMMAND...``: run an agent CLI, pass its output through, record its usage."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from llmledger.cli._app import DbOption, IgnoreOverridesOption, app, fail, load_pricer
from llmledger.ledger import Ledger
from llmledger.plans.report import format_usage_line
from llmledger.runner import run_agent
from llmledger.sources import FORMATS
from llmledger.store.engine import NewerLedgerError

#: The longest --timeout, in seconds: 30 days.
_MAX_TIMEOUT = 30 * 86400.0

_EPILOG = (
    "Examples:\n\n"
    "  llmledger run --task 1.1 -- claude -p 'fix the pager' --output-format json\n\n"
    "  llmledger run --workflow nightly --task lint -- codex exec --json 'fix lint'\n\n"
    "  llmledger run --timeout 600 -- gemini -p 'summarize' --output-format json\n\n"
    "Exit status: the command's own; 128+N when it died of signal N; 124 after --timeout; "
    "127 when it could not be started; 3 when a block budget (llmledger budget) is spent."
)


@app.command("run", epilog=_EPILOG)
def run_command(
    command: Annotated[
        list[str],
        typer.Argument(help="The command and its arguments, after --.", metavar="-- COMMAND..."),
    ],
    task: Annotated[
        str | None, typer.Option("--task", help="Your key for the task run (e.g. a plan task id).")
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Nest the task under a workflow run with this key."),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Who does the work (claude, codex, a name).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="The model, for outputs that do not name it (codex exec)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="A name for the task run.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Kill the command after this many seconds (exit 124); at most 30 days.",
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help=f"Output format (default: detected). One of {', '.join(FORMATS)}."
        ),
    ] = None,
    summary: Annotated[
        bool,
        typer.Option("--summary", help="Print the attempt's usage as JSON on stderr at the end."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print no llmledger warnings on stderr.")
    ] = False,
    db: DbOption = None,
    ignore_overrides: IgnoreOverridesOption = False,
) -> None:
    """Run an agent CLI, pass its stdin, stdout and stderr through unchanged, and record the
    usage in its output (Claude Code json, stream-json and the --verbose array; codex exec
    --json; Gemini CLI json) as a task run with one attempt.

    Put the command after -- so that its options stay its own.

    Output whose usage is not recognized is still recorded as a run, with no usage and a
    warning on stderr (after the command's own output).
    """
    if timeout is not None and not 0 < timeout <= _MAX_TIMEOUT:  # NaN too
        raise fail(
            f"--timeout {timeout:g}: give seconds above 0 and at most {_MAX_TIMEOUT:,.0f} "
            "(30 days), or leave it out for no timeout"
        )
    # A broken prices overrides file stops it before the command starts, not after it ran.
    with Ledger(db, pricer=load_pricer(None, ignore_overrides)) as ledger:
        try:  # nothing could be recorded: stop before the agent starts
            ledger.repository  # noqa: B018 - opening it is the check
        except NewerLedgerError as exc:
            raise fail(str(exc)) from None
        except Exception:  # an unreachable store: record() logs each loss, the agent runs
            pass
        from llmledger.budgets.guard import start_refusal

        refused = start_refusal(
            ledger, agent=agent, model=model, keys=tuple(k for k in (task, workflow) if k)
        )
        if refused is not None:  # a block budget is spent: the command is not started
            raise fail(f"{refused}; {command[0]} was not started", code=3)
        result = run_agent(
            command,
            ledger=ledger,
            task=task,
            workflow=workflow,
            agent=agent,
            model=model,
            name=name,
            format=format,
            timeout=timeout,
            forward_signals=True,
        )
    if not quiet:
        for warning in result.warnings:
            sys.stderr.write(f"llmledger: {warning}\n")
        if result.timed_out:
            sys.stderr.write(f"llmledger: timed out after {timeout:g}s; killed {command[0]}\n")
    if summary:
        sys.stderr.write(json.dumps(result.to_dict()) + "\n")
    elif not quiet and result.calls and sys.stderr.isatty():
        sys.stderr.write(f"llmledger: {format_usage_line(result.totals)}\n")
    raise typer.Exit(result.exit_code)
