"""Plan files: load a YAML plan, validate it with errors that name the file and the field.

The format is documented in docs/plans.md and described by ``plan.schema.json`` beside this
module (documentation for editors and tools; the checks here are the ones that run, so that
jsonschema need not be installed).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from llmledger.agents import AGENTS  # each has a standard command line (agent_command)
from llmledger.errors import LedgerError

__all__ = [
    "AGENTS",
    "Budget",
    "Plan",
    "PlanError",
    "Section",
    "Task",
    "TaskDefaults",
    "load_plan",
    "plan_from_dict",
]

ON_FAILURE = ("stop", "continue")

_PLAN_KEYS = ("name", "budget", "defaults", "sections")
_BUDGET_KEYS = ("max_cost_usd",)
_DEFAULT_KEYS = ("agent", "model", "max_attempts", "timeout", "args", "on_failure")
_SECTION_KEYS = ("id", "name", "tasks")
_TASK_KEYS = (
    "id",
    "name",
    "prompt",
    "command",
    "agent",
    "model",
    "max_attempts",
    "timeout",
    "args",
    "depends_on",
    "parallel",
)


class PlanError(LedgerError, ValueError):
    """A plan file is invalid; the message names the file and the field."""

    def __init__(self, source: str, field: str | None, message: str) -> None:
        self.source = source
        self.field = field
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Budget:
    """The plan's spending limit."""

    max_cost_usd: Decimal | None = None


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    """What every task gets unless it says otherwise."""

    agent: str = "claude"
    model: str | None = None
    max_attempts: int = 3
    timeout: float | None = 900.0
    args: tuple[str, ...] = ()
    on_failure: str = "stop"


@dataclass(frozen=True, slots=True)
class Task:
    """One task: a ``prompt`` for an agent, or a ``command`` run as given."""

    id: str
    name: str
    section_id: str
    prompt: str | None
    command: tuple[str, ...] | None
    agent: str | None
    model: str | None
    max_attempts: int
    timeout: float | None
    args: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    parallel: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    """A named group of tasks; its usage is the subtotal of theirs."""

    id: str
    name: str
    tasks: tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated plan: sections of tasks, defaults and a budget."""

    name: str
    sections: tuple[Section, ...]
    defaults: TaskDefaults = TaskDefaults()
    budget: Budget = Budget()
    path: Path | None = None

    @property
    def tasks(self) -> list[Task]:
        """Every task, in plan order."""
        return [task for section in self.sections for task in section.tasks]

    def section(self, section_id: str) -> Section:
        """The section with this id."""
        return next(s for s in self.sections if s.id == section_id)


# -- loading ------------------------------------------------------------------------------------


def load_plan(path: str | Path) -> Plan:
    """Read and validate a YAML plan file; raises :class:`PlanError` naming file and field."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(source, None, f"cannot read the plan: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise PlanError(source, None, f"not valid YAML{where}: {problem}") from None
    return plan_from_dict(data, source=source, path=path.resolve())


def plan_from_dict(data: Any, *, source: str = "<plan>", path: Path | None = None) -> Plan:
    """Validate a decoded plan (a mapping, as YAML or JSON gives it)."""
    v = _Validator(source)
    top = v.mapping(data, None, _PLAN_KEYS)
    name = v.text(top.get("name"), "name", required=True)
    budget = Budget()
    if top.get("budget") is not None:
        b = v.mapping(top["budget"], "budget", _BUDGET_KEYS)
        budget = Budget(v.money(b.get("max_cost_usd"), "budget.max_cost_usd"))
    defaults = _defaults(v, top.get("defaults"))
    sections_raw = v.sequence(top.get("sections"), "sections", required=True)
    if not sections_raw:
        raise v.error("sections", "a plan needs at least one section")
    sections: list[Section] = []
    seen_sections: set[str] = set()
    seen_tasks: set[str] = set()
    for i, raw in enumerate(sections_raw):
        where = f"sections[{i}]"
        s = v.mapping(raw, where, _SECTION_KEYS)
        sid = v.ident(s.get("id"), f"{where}.id")
        if sid in seen_sections:
            raise v.error(f"{where}.id", f"duplicate section id {sid!r}")
        seen_sections.add(sid)
        tasks_raw = v.sequence(s.get("tasks"), f"{where}.tasks", required=True)
        if not tasks_raw:
            raise v.error(f"{where}.tasks", "a section needs at least one task")
        tasks = []
        for j, traw in enumerate(tasks_raw):
            task = _task(v, traw, f"{where}.tasks[{j}]", sid, defaults, seen_tasks)
            seen_tasks.add(task.id)
            tasks.append(task)
        sname = v.text(s.get("name"), f"{where}.name") or sid
        sections.append(Section(id=sid, name=sname, tasks=tuple(tasks)))
    return Plan(name=name, sections=tuple(sections), defaults=defaults, budget=budget, path=path)


def _defaults(v: _Validator, raw: Any) -> TaskDefaults:
    if raw is None:
        return TaskDefaults()
    d = v.mapping(raw, "defaults", _DEFAULT_KEYS)
    base = TaskDefaults()
    on_failure = v.text(d.get("on_failure"), "defaults.on_failure") or base.on_failure
    if on_failure not in ON_FAILURE:
        raise v.error("defaults.on_failure", f"must be one of {', '.join(ON_FAILURE)}")
    return TaskDefaults(
        agent=v.agent(d.get("agent"), "defaults.agent") or base.agent,
        model=v.text(d.get("model"), "defaults.model"),
        max_attempts=v.positive_int(d.get("max_attempts"), "defaults.max_attempts")
        or base.max_attempts,
        timeout=v.timeout(d, "defaults.timeout", base.timeout),
        args=v.strings(d.get("args"), "defaults.args"),
        on_failure=on_failure,
    )


def _task(
    v: _Validator, raw: Any, where: str, section_id: str, defaults: TaskDefaults, seen: set[str]
) -> Task:
    t = v.mapping(raw, where, _TASK_KEYS)
    tid = v.ident(t.get("id"), f"{where}.id")
    if tid in seen:
        raise v.error(f"{where}.id", f"duplicate task id {tid!r}")
    prompt = v.text(t.get("prompt"), f"{where}.prompt")
    command = v.strings(t.get("command"), f"{where}.command") if "command" in t else None
    if (prompt is None) == (command is None):
        raise v.error(where, "a task needs exactly one of 'prompt' (for an agent) or 'command'")
    if command is not None and not command:
        raise v.error(f"{where}.command", "must not be empty")
    agent = v.agent(t.get("agent"), f"{where}.agent")
    depends = v.strings(t.get("depends_on"), f"{where}.depends_on")
    for dep in depends:
        if dep not in seen:
            hint = "it is not defined" if dep != tid else "a task cannot depend on itself"
            raise v.error(
                f"{where}.depends_on",
                f"unknown task {dep!r} ({hint} before this task; depends_on names earlier tasks)",
            )
    parallel = t.get("parallel", False)
    if not isinstance(parallel, bool):
        raise v.error(f"{where}.parallel", f"must be true or false, got {parallel!r}")
    return Task(
        id=tid,
        name=v.text(t.get("name"), f"{where}.name") or tid,
        section_id=section_id,
        prompt=prompt,
        command=command,
        agent=agent if command is not None else agent or defaults.agent,
        model=v.text(t.get("model"), f"{where}.model") or defaults.model,
        max_attempts=v.positive_int(t.get("max_attempts"), f"{where}.max_attempts")
        or defaults.max_attempts,
        timeout=v.timeout(t, f"{where}.timeout", defaults.timeout),
        args=v.strings(t.get("args"), f"{where}.args") if "args" in t else defaults.args,
        depends_on=depends,
        parallel=parallel,
    )


class _Validator:
    """Typed field access that raises :class:`PlanError` naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, field: str | None, message: str) -> PlanError:
        return PlanError(self.source, field, message)

    def mapping(self, value: Any, field: str | None, keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            what = "the plan" if field is None else "this field"
            raise self.error(field, f"{what} must be a mapping, got {_kind(value)}")
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(keys)
                name = f"{field}.{key}" if field else str(key)
                raise self.error(name, f"unknown field{hint}; known fields: {known}")
        return value

    def sequence(self, value: Any, field: str, *, required: bool = False) -> list[Any]:
        if value is None:
            if required:
                raise self.error(field, "is required")
            return []
        if not isinstance(value, list):
            raise self.error(field, f"must be a list, got {_kind(value)}")
        return value

    def text(self, value: Any, field: str, *, required: bool = False) -> Any:
        if value is None:
            if required:
                raise self.error(field, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, f"must be a non-empty string, got {_kind(value)}")
        return value

    def ident(self, value: Any, field: str) -> str:
        if value is None:
            raise self.error(field, "is required")
        if isinstance(value, bool | float):
            raise self.error(field, f'must be a string; quote it: "{value}" (YAML read a number)')
        if isinstance(value, int):
            return str(value)
        result: str = self.text(value, field)
        return result

    def strings(self, value: Any, field: str) -> tuple[str, ...]:
        items = self.sequence(value, field)
        for k, item in enumerate(items):
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise self.error(f"{field}[{k}]", f"must be a string, got {_kind(item)}")
        return tuple(str(item) for item in items)

    def agent(self, value: Any, field: str) -> str | None:
        agent = self.text(value, field)
        if agent is not None and agent not in AGENTS:
            raise self.error(field, f"unknown agent {agent!r}; one of {', '.join(AGENTS)}")
        return agent  # type: ignore[no-any-return]

    def positive_int(self, value: Any, field: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(field, f"must be a whole number of at least 1, got {value!r}")
        return value

    def timeout(self, data: Mapping[str, Any], field: str, default: float | None) -> float | None:
        key = field.rsplit(".", 1)[1]
        if key not in data:
            return default
        value = data[key]
        if value is None:
            return None  # explicitly no timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(field, f"must be a positive number of seconds, got {value!r}")
        return float(value)

    def money(self, value: Any, field: str) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self.error(field, f"must be a number of US dollars, got {_kind(value)}")
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise self.error(field, f"must be a number of US dollars, got {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise self.error(field, f"must be zero or more, got {value!r}")
        return amount


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "an empty string" if not value.strip() else f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__
