"""What a plan is expected to cost before it runs.

Per task, in order of preference:

1. ``history`` — the ledger's finished task runs with the same task name, agent and model:
   the median and the 90th percentile (nearest rank) of their cost, retries included.
2. ``estimate`` — the pre-run estimate of the prompt (:func:`llmledger.estimate.estimate_cost`:
   tokens from text length, priced; expected and high). It counts the prompt alone, not the
   agent's system prompt, tool results and turns, so for agent tasks it is a floor.
3. ``unknown`` — a ``command`` task with no history, or a prompt with no model to price.

Duration: per task, the median of the past attempts of task runs with the same key (else
unknown); the plan's is their sum, the tasks run one at a time (parallel tasks may overlap).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from statistics import median
from typing import Any

from sqlalchemy import select

from llmledger.estimate import estimate_cost
from llmledger.forecast.cost import p90
from llmledger.forecast.history import attempt_hours
from llmledger.plans.model import Plan, Task
from llmledger.pricing import Pricer
from llmledger.store import Repository
from llmledger.store.engine import READ_ONLY
from llmledger.store.schema import runs

__all__ = [
    "HISTORY_LIMIT",
    "PlanEstimate",
    "TaskEstimate",
    "estimate_plan",
    "estimate_task",
    "history_costs",
]

#: The most recent finished task runs looked at per task.
HISTORY_LIMIT = 200
_FINISHED = ("succeeded", "failed", "timed_out")


@dataclass(frozen=True, slots=True)
class TaskEstimate:
    """The expected cost of one task and where the number comes from (``basis``)."""

    task_id: str
    name: str
    agent: str | None
    model: str | None
    basis: str
    expected_usd: Decimal | None = None
    p90_usd: Decimal | None = None
    samples: int = 0
    note: str = ""
    #: The median hours of one past attempt of this task (same key); None: unknown.
    expected_hours: float | None = None
    duration_samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (money as floats; None when unknown)."""
        return {
            "id": self.task_id,
            "name": self.name,
            "agent": self.agent,
            "model": self.model,
            "basis": self.basis,
            "expected_usd": _f(self.expected_usd),
            "p90_usd": _f(self.p90_usd),
            "samples": self.samples,
            "note": self.note,
            "expected_hours": self.expected_hours,
            "duration_samples": self.duration_samples,
        }


@dataclass(slots=True)
class PlanEstimate:
    """A plan's expected cost: the sum of what is known, and how many tasks are not."""

    plan_name: str
    tasks: list[TaskEstimate] = field(default_factory=list)

    @property
    def expected_usd(self) -> Decimal | None:
        """Sum of the tasks' expected costs (None when none is known)."""
        return _sum(t.expected_usd for t in self.tasks)

    @property
    def p90_usd(self) -> Decimal | None:
        """Sum of the tasks' p90 (history) or high (estimate) costs."""
        return _sum(t.p90_usd for t in self.tasks)

    @property
    def unknown(self) -> int:
        """Tasks whose cost could not be estimated."""
        return sum(1 for t in self.tasks if t.expected_usd is None)

    @property
    def expected_hours(self) -> float | None:
        """Sum of the tasks' expected durations, one task at a time (None when none known)."""
        known = [t.expected_hours for t in self.tasks if t.expected_hours is not None]
        return sum(known) if known else None

    @property
    def unknown_durations(self) -> int:
        """Tasks with no past attempt to time them by."""
        return sum(1 for t in self.tasks if t.expected_hours is None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "plan_name": self.plan_name,
            "expected_usd": _f(self.expected_usd),
            "p90_usd": _f(self.p90_usd),
            "expected_hours": self.expected_hours,
            "unknown_duration_tasks": self.unknown_durations,
            "unknown_tasks": self.unknown,
            "tasks": [t.to_dict() for t in self.tasks],
        }


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _sum(values: Iterable[Decimal | None]) -> Decimal | None:
    known = [v for v in values if v is not None]
    return sum(known, Decimal(0)) if known else None


def history_costs(repo: Repository, task: Task) -> list[Decimal]:
    """Costs of the ledger's finished task runs with this task's name, agent and model."""
    query = (
        select(runs.c.cost_usd, runs.c.metadata)
        .where(
            runs.c.kind == "task",
            runs.c.name == task.name,
            runs.c.status.in_(_FINISHED),
            runs.c.cost_usd.is_not(None),
            runs.c.agent_id == task.agent if task.agent else runs.c.agent_id.is_(None),
        )
        .order_by(runs.c.started_at.desc())
        .limit(HISTORY_LIMIT)
    )
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        rows = conn.execute(query).all()
    # The model lives in the run's metadata (runs have no model column): filter here.
    return [
        Decimal(cost)
        for cost, meta in rows
        if (meta or {}).get("model") == task.model and cost is not None
    ]


def _make(task: Task, basis: str, note: str, **values: Any) -> TaskEstimate:
    return TaskEstimate(task.id, task.name, task.agent, task.model, basis, note=note, **values)


def estimate_task(
    task: Task, repo: Repository | None, pricer: Pricer | None = None
) -> TaskEstimate:
    """One task's estimate: from history when there is any, else from its prompt."""
    costs = history_costs(repo, task) if repo is not None else []
    if costs:
        note = f"median and p90 of {len(costs)} past run(s)"
        return _make(
            task,
            "history",
            note,
            expected_usd=Decimal(median(costs)),
            p90_usd=p90(costs),
            samples=len(costs),
        )
    if task.prompt is None:
        return _make(task, "unknown", "a command task with no history")
    if task.model is None:
        return _make(task, "unknown", "no model to price the prompt with")
    est = estimate_cost(task.prompt, task.model, pricer=pricer)
    if est.cost_usd is None:
        return _make(task, "unknown", f"no price known for {task.model}")
    note = "the prompt alone (a floor for agent tasks); p90 column: the estimate's high end"
    return _make(task, "estimate", note, expected_usd=est.cost_usd, p90_usd=est.cost_high_usd)


def _timed(estimate: TaskEstimate, repo: Repository | None) -> TaskEstimate:
    hours = attempt_hours(repo, estimate.task_id) if repo is not None else []
    if not hours:
        return estimate
    return replace(estimate, expected_hours=median(hours), duration_samples=len(hours))


def estimate_plan(
    plan: Plan, repo: Repository | None = None, *, pricer: Pricer | None = None
) -> PlanEstimate:
    """Estimate every task of ``plan`` (``repo``: the ledger to read history from): its
    cost and its duration."""
    return PlanEstimate(
        plan.name, [_timed(estimate_task(t, repo, pricer), repo) for t in plan.tasks]
    )
