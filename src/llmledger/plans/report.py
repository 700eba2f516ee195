"""Plan reports: ``usage-report.json`` beside the plan, ``session-usage-report.json`` for a
pipeline session, the per-task log file with its usage header, and the one-line summaries.

Every number comes from the ledger (the inclusive totals of the plan, section and task runs),
so the report and ``llmledger show`` always agree; ``num_turns`` and ``duration_api_ms`` come
from the agents' own result summaries, which the ledger does not store per call.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmledger._private import open_private
from llmledger.display import format_cost, format_tokens
from llmledger.totals import PLAN_FIELDS, Totals

if TYPE_CHECKING:
    from llmledger.plans.model import Plan
    from llmledger.plans.outcome import PlanOutcome, SessionOutcome, TaskOutcome

__all__ = [
    "PLAN_REPORT",
    "SESSION_REPORT",
    "format_task_line",
    "format_usage_line",
    "plan_report",
    "report_path_for",
    "session_report",
    "totals_fields",
    "write_json",
    "write_task_log",
]

PLAN_REPORT = "usage-report.json"
SESSION_REPORT = "session-usage-report.json"


def report_path_for(plan_path: Path, *, shared_dir: bool = False) -> Path:
    """Where a plan's report goes: ``usage-report.json`` beside it, or
    ``<plan stem>.usage-report.json`` when other plans of the same run share its directory."""
    name = f"{plan_path.stem}.{PLAN_REPORT}" if shared_dir else PLAN_REPORT
    return plan_path.parent / name


def totals_fields(
    totals: Totals, *, num_turns: int | None = None, duration_api_ms: int | None = None
) -> dict[str, Any]:
    """The usage fields every plan report entry carries: the totals' :data:`PLAN_FIELDS`
    (None: never reported, as in the ledger), then the agents' own ``num_turns`` and
    ``duration_api_ms``, which the ledger does not store per call."""
    return {
        **totals.to_dict(PLAN_FIELDS),
        "num_turns": num_turns,
        "duration_api_ms": duration_api_ms,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def plan_report(outcome: PlanOutcome) -> dict[str, Any]:
    """The ``usage-report.json`` document of a plan run."""
    plan = outcome.plan
    sections = []
    for section in plan.sections:
        task_outs = [outcome.tasks[t.id] for t in section.tasks]
        sections.append(
            {
                "id": section.id,
                "name": section.name,
                "task_count": len(section.tasks),
                "status": outcome.section_statuses.get(section.id, "not_started"),
                "run_id": outcome.section_run_ids.get(section.id),
                **totals_fields(
                    outcome.section_totals.get(section.id, Totals()),
                    num_turns=_sum(t.num_turns for t in task_outs),
                    duration_api_ms=_sum(t.duration_api_ms for t in task_outs),
                ),
            }
        )
    return {
        "plan_name": plan.name,
        "plan_path": str(plan.path) if plan.path else None,
        "started_at": _iso(outcome.started_at),
        "completed_at": _iso(outcome.finished_at),
        "status": outcome.status,
        "reason": outcome.reason,
        "run_id": outcome.run_id,
        "totals": totals_fields(
            outcome.totals,
            num_turns=outcome.sum_tasks("num_turns"),
            duration_api_ms=outcome.sum_tasks("duration_api_ms"),
        ),
        "sections": sections,
        "tasks": [_task_entry(outcome.tasks[t.id]) for t in plan.tasks],
    }


def _task_entry(out: TaskOutcome) -> dict[str, Any]:
    task = out.task
    return {
        "id": task.id,
        "section_id": task.section_id,
        "name": task.name,
        "status": out.status,
        "attempts": len(out.attempts),
        "agent": task.agent,
        "model": task.model,
        "reason": out.reason,
        "run_id": out.run_id,
        "log_path": str(out.log_path) if out.log_path else None,
        **totals_fields(out.totals, num_turns=out.num_turns, duration_api_ms=out.duration_api_ms),
        "attempt_details": [
            {
                "attempt": n,
                "status": a.status,
                "exit_code": a.exit_code,
                "duration_ms": a.duration_ms,
                "format": a.format,
                "run_id": a.run_id,
                "warnings": a.warnings,
                **totals_fields(
                    a.totals,
                    num_turns=a.summary.num_turns if a.summary else None,
                    duration_api_ms=a.summary.duration_api_ms if a.summary else None,
                ),
            }
            for n, a in enumerate(out.attempts, 1)
        ],
    }


def session_report(
    session: SessionOutcome, report_paths: Sequence[Path | None] = ()
) -> dict[str, Any]:
    """The ``session-usage-report.json`` document: each work item's totals and the grand total."""
    items = []
    for index, plan in enumerate(session.plans):
        outcome = session.outcomes[index] if index < len(session.outcomes) else None
        report = report_paths[index] if index < len(report_paths) else None
        entry: dict[str, Any] = {
            "name": plan.name,
            "plan_path": str(plan.path) if plan.path else None,
            "status": outcome.status if outcome else "not_started",
            "reason": outcome.reason if outcome else None,
            "run_id": outcome.run_id if outcome else None,
            "report_path": str(report) if report and outcome else None,
        }
        if outcome is not None:
            entry["totals"] = totals_fields(
                outcome.totals,
                num_turns=outcome.sum_tasks("num_turns"),
                duration_api_ms=outcome.sum_tasks("duration_api_ms"),
            )
        else:
            entry["totals"] = totals_fields(Totals())
        items.append(entry)
    outs = session.outcomes
    return {
        "session_name": session.name,
        "started_at": _iso(session.started_at),
        "completed_at": _iso(session.finished_at),
        "status": session.status,
        "reason": session.reason,
        "run_id": session.run_id,
        "totals": totals_fields(
            session.totals,
            num_turns=_sum(o.sum_tasks("num_turns") for o in outs),
            duration_api_ms=_sum(o.sum_tasks("duration_api_ms") for o in outs),
        ),
        "work_items": items,
    }


def _sum(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write a report atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# -- human-readable lines -----------------------------------------------------------------------


def format_usage_line(totals: Totals) -> str:
    """``$0.0783 · 47,324 tokens · cache hit 62.4%``."""
    u = totals.usage
    tokens = format_tokens(u.total_tokens)
    rate = u.cache_hit_rate
    hit = "-" if rate is None else f"{rate:.1%}"
    return f"{format_cost(totals)} · {tokens} tokens · cache hit {hit}"


def format_task_line(out: TaskOutcome, plan_total: Totals) -> str:
    """The line printed after each task: its status, cost, tokens, cache hit rate, and the
    running plan total."""
    mark = {"succeeded": "✓", "cancelled": "✗", "skipped": "-"}.get(out.status, "✗")
    attempts = f" after {len(out.attempts)} attempts" if len(out.attempts) > 1 else ""
    return (
        f"{mark} {out.task.id} {out.task.name}: {out.status}{attempts} · "
        f"{format_usage_line(out.totals)} · plan total {format_cost(plan_total)}"
    )


# -- the task log file --------------------------------------------------------------------------


def write_task_log(path: Path, part: Path, out: TaskOutcome, plan: Plan) -> None:
    """Write the task's log: a header with its status, duration, return codes and usage, then
    the output of every attempt (moved from ``part``, where the attempts wrote it)."""
    totals = out.totals
    u = totals.usage
    started, finished = out.started_at, out.finished_at
    seconds = (finished - started).total_seconds() if started and finished else None
    last = out.attempts[-1] if out.attempts else None
    header = [
        f"# task {out.task.id}: {out.task.name}",
        f"# plan: {plan.name} ({plan.path or '-'})  section: {out.task.section_id}",
        f"# status: {out.status}  attempts: {len(out.attempts)}  "
        f"duration: {'-' if seconds is None else f'{seconds:.1f}s'}  "
        f"return code: {'-' if last is None else last.exit_code}",
        f"# usage: cost {format_cost(totals)}  input {format_tokens(u.input_tokens)}  "
        f"output {format_tokens(u.output_tokens)}  "
        f"cache read {format_tokens(u.cache_read_tokens)}  "
        f"cache write {format_tokens(u.cache_write_tokens)}"
        f"  total {format_tokens(u.total_tokens)}  cache hit "
        f"{'-' if u.cache_hit_rate is None else f'{u.cache_hit_rate:.1%}'}"
        f"  turns {format_tokens(out.num_turns)}  api {format_tokens(out.duration_api_ms)} ms",
    ]
    if out.reason:
        header.append(f"# reason: {out.reason}")
    for n, a in enumerate(out.attempts, 1):
        header.append(
            f"# attempt {n}: {a.status}  exit {a.exit_code}  {a.duration_ms / 1000:.1f}s  "
            f"{format_usage_line(a.totals)}  run {a.run_id}"
        )
    header.append(f"# usage json: {json.dumps(totals_fields(totals))}")
    header.append("# " + "-" * 70)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover would lend the log its permissions
    with open_private(tmp, "wb") as log:
        log.write(("\n".join(header) + "\n").encode())
        if part.exists():
            with part.open("rb") as body:
                shutil.copyfileobj(body, log)
    os.replace(tmp, path)
    part.unlink(missing_ok=True)
