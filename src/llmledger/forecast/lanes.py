"""Lanes: the stretches of a task's life that velocity and ETA measure.

A lane runs from a start status to an end status (``work`` = ``in_progress`` →
``ready_to_review``). Lanes are listed in the order a task passes them. Terminal statuses end
a task; a blocked status pauses the clock of the lane the task is in. A lanes file (TOML)
replaces the default set and may give each lane ``hours``, the velocity of the ``config``
mode::

    terminal = ["completed", "cancelled"]
    blocked = ["blocked"]

    [[lanes]]
    name = "work"
    from = "in_progress"
    to = "ready_to_review"
    hours = 4
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmledger.errors import UsageError

__all__ = [
    "BUILTIN_LANES",
    "DEFAULT_LANES",
    "PLAN_LANES",
    "Lane",
    "LaneSet",
    "LanesError",
    "default_lanes_path",
    "load_lanes",
    "parse_lanes",
    "resolve_lanes",
]


class LanesError(UsageError):
    """A lanes file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Lane:
    """One lane: a visit starts on ``start`` and counts when it ends on ``end``."""

    name: str
    start: str
    end: str
    hours: float | None = None


@dataclass(frozen=True, slots=True)
class LaneSet:
    """The lanes in the order a task passes them, the terminal and the blocked statuses."""

    lanes: tuple[Lane, ...]
    terminal: frozenset[str]
    blocked: frozenset[str]
    #: Where the set came from (a path or a built-in name), for messages.
    origin: str = "default"

    @property
    def done(self) -> str:
        """The status that completes a task: the last lane's end."""
        return self.lanes[-1].end

    def lane_index(self, status: str) -> int | None:
        """The index of the lane whose start is ``status``, else None."""
        for index, lane in enumerate(self.lanes):
            if lane.start == status:
                return index
        return None

    def passed_index(self, status: str) -> int | None:
        """The last lane whose end is ``status`` (a task in it has passed that lane)."""
        found = None
        for index, lane in enumerate(self.lanes):
            if lane.end == status:
                found = index
        return found


#: mcoda's lanes: work, review, QA.
DEFAULT_LANES = LaneSet(
    (
        Lane("work", "in_progress", "ready_to_review"),
        Lane("review", "ready_to_review", "ready_to_qa"),
        Lane("qa", "ready_to_qa", "completed"),
    ),
    terminal=frozenset({"completed", "cancelled"}),
    blocked=frozenset({"blocked"}),
    origin="mcoda",
)
#: The statuses ``llmledger plan run`` writes: one lane, running → succeeded.
PLAN_LANES = LaneSet(
    (Lane("work", "running", "succeeded"),),
    terminal=frozenset({"succeeded", "failed", "timed_out", "cancelled", "skipped"}),
    blocked=frozenset({"retrying", "paused_budget"}),
    origin="plan",
)
BUILTIN_LANES: Mapping[str, LaneSet] = {"mcoda": DEFAULT_LANES, "plan": PLAN_LANES}


def default_lanes_path() -> Path:
    """``~/.config/llmledger/lanes.toml`` (the platform's config directory)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("llmledger")) / "lanes.toml"


def resolve_lanes(option: str | None) -> LaneSet:
    """The lanes ``--lanes`` names: a built-in set (``mcoda``, ``plan``), a TOML file, or
    (None) the default file when it exists, else mcoda's lanes."""
    if option is not None and option in BUILTIN_LANES:
        return BUILTIN_LANES[option]
    if option is not None:
        return load_lanes(Path(option))
    path = Path(os.environ["LLMLEDGER_LANES"]) if "LLMLEDGER_LANES" in os.environ else None
    path = path or default_lanes_path()
    return load_lanes(path) if path.exists() else DEFAULT_LANES


def load_lanes(path: Path) -> LaneSet:
    """Read a lanes file; :class:`LanesError` names the file and the field at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LanesError(str(path), f"cannot read the lanes file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LanesError(str(path), f"not valid TOML: {exc}") from None
    return parse_lanes(data, origin=str(path))


def _status(value: Any, where: str, origin: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LanesError(f"{origin}: {where}", "a status name (a non-empty string)")
    return value.strip()


def _statuses(data: Mapping[str, Any], name: str, default: frozenset[str], origin: str) -> Any:
    if name not in data:
        return default
    value = data[name]
    if not isinstance(value, list):
        raise LanesError(f"{origin}: {name}", "a list of status names")
    return frozenset(_status(v, f"{name}[{i}]", origin) for i, v in enumerate(value))


def parse_lanes(data: Mapping[str, Any], *, origin: str = "lanes") -> LaneSet:
    """A :class:`LaneSet` from a decoded lanes file (see the module's docstring)."""
    known = {"lanes", "terminal", "blocked"}
    for key in data:
        if key not in known:
            raise LanesError(f"{origin}: {key}", f"unknown field; one of {sorted(known)}")
    items = data.get("lanes")
    if not isinstance(items, list) or not items:
        raise LanesError(f"{origin}: lanes", "at least one [[lanes]] table (name, from, to)")
    lanes: list[Lane] = []
    for index, item in enumerate(items):
        where = f"lanes[{index}]"
        if not isinstance(item, dict):
            raise LanesError(f"{origin}: {where}", "a table with name, from, to (and hours)")
        for key in item:
            if key not in {"name", "from", "to", "hours"}:
                raise LanesError(f"{origin}: {where}.{key}", "unknown field; name, from, to, hours")
        for key in ("name", "from", "to"):
            if key not in item:
                raise LanesError(f"{origin}: {where}.{key}", "missing")
        name = _status(item["name"], f"{where}.name", origin)
        start = _status(item["from"], f"{where}.from", origin)
        end = _status(item["to"], f"{where}.to", origin)
        if start == end:
            raise LanesError(f"{origin}: {where}.to", f"the same status as from ({start!r})")
        hours = item.get("hours")
        if hours is not None:
            if isinstance(hours, bool) or not isinstance(hours, int | float):
                raise LanesError(f"{origin}: {where}.hours", f"a number of hours, not {hours!r}")
            if not math.isfinite(hours) or hours < 0:
                raise LanesError(f"{origin}: {where}.hours", f"zero or more, not {hours!r}")
            hours = float(hours)
        if any(lane.name == name for lane in lanes):
            raise LanesError(f"{origin}: {where}.name", f"lane {name!r} is named twice")
        if any(lane.start == start for lane in lanes):
            raise LanesError(f"{origin}: {where}.from", f"another lane starts on {start!r}")
        lanes.append(Lane(name, start, end, hours))
    terminal = _statuses(data, "terminal", frozenset({lanes[-1].end}), origin)
    blocked = _statuses(data, "blocked", frozenset({"blocked"}), origin)
    if lanes[-1].end not in terminal:
        raise LanesError(
            f"{origin}: terminal", f"must hold the last lane's end status {lanes[-1].end!r}"
        )
    return LaneSet(tuple(lanes), terminal, blocked, origin)
