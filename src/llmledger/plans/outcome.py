"""What a plan run leaves: the outcome of each task, of a plan, and of a pipeline session.

Filled by the orchestrator (``plans/orchestrator.py``) as the work runs, read by the reports
(``plans/report.py``) and the CLI; a module of its own so that neither of the two imports the
other for these types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llmledger.totals import Totals

if TYPE_CHECKING:
    from llmledger.plans.model import Plan, Task
    from llmledger.runner import AgentResult
    from llmledger.store.schema import RunStatus, TerminalRunStatus

    #: A task in a plan run: not started yet, running, never started (the plan stopped
    #: first), or ended as a run ends.
    TaskStatus = Literal["pending", "running", "not_started", TerminalRunStatus]

__all__ = ["PlanOutcome", "SessionOutcome", "TaskOutcome"]


@dataclass(slots=True)
class TaskOutcome:
    """What happened to one task (filled as it runs)."""

    task: Task
    status: TaskStatus = "pending"
    attempts: list[AgentResult] = field(default_factory=list)
    run_id: str | None = None
    reason: str | None = None
    log_path: Path | None = None
    totals: Totals = field(default_factory=Totals)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def num_turns(self) -> int | None:
        """Agent turns over all attempts (from the agents' own result summaries)."""
        return _sum_summary(self.attempts, "num_turns")

    @property
    def duration_api_ms(self) -> int | None:
        """Time spent in API calls over all attempts, as the agents report it."""
        return _sum_summary(self.attempts, "duration_api_ms")


def _sum_summary(attempts: Sequence[AgentResult], name: str) -> int | None:
    values = [getattr(a.summary, name) for a in attempts if a.summary is not None]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


@dataclass(slots=True)
class PlanOutcome:
    """A finished (or stopped) plan run: statuses, run ids and ledger totals."""

    plan: Plan
    status: RunStatus = "running"
    reason: str | None = None
    run_id: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    tasks: dict[str, TaskOutcome] = field(default_factory=dict)
    section_run_ids: dict[str, str] = field(default_factory=dict)
    section_statuses: dict[str, TerminalRunStatus] = field(default_factory=dict)
    section_totals: dict[str, Totals] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)
    report_path: Path | None = None

    def sum_tasks(self, name: str) -> int | None:
        """Sum a per-task agent figure (``num_turns``, ``duration_api_ms``) over the plan."""
        known = [v for t in self.tasks.values() if (v := getattr(t, name)) is not None]
        return sum(known) if known else None


@dataclass(slots=True)
class SessionOutcome:
    """A pipeline session over several plans (work items)."""

    name: str
    status: RunStatus = "running"
    reason: str | None = None
    run_id: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    plans: list[Plan] = field(default_factory=list)
    outcomes: list[PlanOutcome] = field(default_factory=list)
    work_item_run_ids: list[str] = field(default_factory=list)
    totals: Totals = field(default_factory=Totals)
