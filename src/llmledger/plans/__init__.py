"""Plans of agent tasks: the file format, the orchestrator, reports and estimates.

See docs/plans.md. ``load_plan`` reads a plan; ``run_plan`` / ``run_session`` run it with usage
recorded per attempt, task, section, plan and session; ``plans.report`` writes the reports.
"""

from llmledger.plans.model import Plan, PlanError, load_plan
from llmledger.plans.orchestrator import PlanOptions, run_plan, run_session

__all__ = ["Plan", "PlanError", "PlanOptions", "load_plan", "run_plan", "run_session"]
