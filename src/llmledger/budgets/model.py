"""What a budget is: a limit in USD over a window, for the calls a scope selects.

Windows: ``total`` (all time), ``day``, ``week`` (from Monday) and ``month``, each in a time
zone (IANA, via :mod:`zoneinfo`, so a day across a DST change is 23 or 25 hours), and
``rolling:<N>h`` (the last N hours, sliding). Scope: any of ``agent``, ``workflow`` (a run key
and its whole subtree), ``project``, ``model``, ``provider``, ``source``, ``host``; empty
covers every call. Action ``block`` refuses reservations that would go over; ``warn`` only
warns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmledger.errors import UsageError
from llmledger.values import MAX_USD

__all__ = [
    "ACTIONS",
    "DEFAULT_THRESHOLDS",
    "SCOPE_KEYS",
    "Action",
    "Budget",
    "CallContext",
    "Window",
    "covered",
    "make_budget",
    "parse_scope",
    "parse_thresholds",
]

Action = Literal["block", "warn"]
ACTIONS: tuple[str, ...] = get_args(Action)
#: The scope keys a budget may name, each a column of the calls (``workflow``: a run key).
SCOPE_KEYS: tuple[str, ...] = (
    "agent",
    "workflow",
    "project",
    "model",
    "provider",
    "source",
    "host",
)
#: Percentages of the limit at which a budget warns, unless told otherwise.
DEFAULT_THRESHOLDS: tuple[int, ...] = (50, 80, 100)
_NAME = re.compile(r"^[A-Za-z0-9_.@:-]{1,64}$")
_ROLLING = re.compile(r"^rolling:([1-9][0-9]{0,4})h$")
_CALENDAR = ("day", "week", "month")


@dataclass(frozen=True, slots=True)
class Window:
    """A budget's window: ``total``, ``day``, ``week``, ``month`` or ``rolling`` (``hours``)."""

    kind: Literal["total", "day", "week", "month", "rolling"]
    hours: int | None = None

    @classmethod
    def parse(cls, text: str) -> Window:
        """The window ``text`` names (``total``, ``day``, ``week``, ``month``, ``rolling:24h``);
        raises :class:`UsageError` (field ``window``) for anything else."""
        value = text.strip().lower()
        if value in ("total", *_CALENDAR):
            return cls(value)  # type: ignore[arg-type]
        match = _ROLLING.match(value)
        if match:
            return cls("rolling", int(match.group(1)))
        raise UsageError(
            "window",
            f"unknown window {text!r}: use total, day, week, month or rolling:<N>h "
            "(e.g. rolling:24h)",
        )

    def __str__(self) -> str:
        return f"rolling:{self.hours}h" if self.kind == "rolling" else self.kind

    def bounds(self, now: datetime, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """The window holding ``now``: (start, end) as aware UTC datetimes. ``total`` has
        neither; a rolling window ends at ``now`` (it never resets, it slides)."""
        if self.kind == "total":
            return None, None
        if self.kind == "rolling":
            assert self.hours is not None
            return now - timedelta(hours=self.hours), now
        local = now.astimezone(zone)
        day = local.date()
        if self.kind == "day":
            first, after = day, day + timedelta(days=1)
        elif self.kind == "week":
            first = day - timedelta(days=day.weekday())
            after = first + timedelta(days=7)
        else:
            first = day.replace(day=1)
            after = (first + timedelta(days=32)).replace(day=1)
        # Midnight local time, whatever the UTC offset is that day (zoneinfo applies DST).
        start = datetime(first.year, first.month, first.day, tzinfo=zone).astimezone(UTC)
        end = datetime(after.year, after.month, after.day, tzinfo=zone).astimezone(UTC)
        return start, end


@dataclass(frozen=True, slots=True)
class CallContext:
    """What is known, before a call, about the call a reservation is for. A scope key whose
    value is unknown here (None) is taken to match: a reservation errs on the side of holding."""

    agent: str | None = None
    workflows: tuple[str, ...] | None = None  # the keys of the current run and its ancestors
    model: str | None = None
    provider: str | None = None
    project: str | None = None
    source: str | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit: ``limit_usd`` per ``window`` (in ``tz``) for the calls ``scope``
    selects; ``action`` block or warn; warnings at ``thresholds`` percent; a webhook URL."""

    name: str
    limit_usd: Decimal
    window: Window
    tz: str | None = None
    scope: Mapping[str, str] = field(default_factory=dict)
    action: Action = "block"
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    notify: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of the window (UTC when none was given)."""
        return ZoneInfo(self.tz or "UTC")

    def bounds(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The current window (start, end); see :meth:`Window.bounds`."""
        return self.window.bounds(now, self.zone)

    def matches(self, context: CallContext, *, unknown_matches: bool = True) -> bool:
        """Whether a call made in ``context`` falls in this budget's scope. A value the
        context does not know (None) matches when ``unknown_matches`` (before a call: hold
        rather than let through); a recorded call's None is a value, and does not."""
        for key, wanted in self.scope.items():
            if key == "workflow":
                if context.workflows is None:
                    if not unknown_matches:
                        return False
                elif wanted not in context.workflows:
                    return False
                continue
            known = getattr(context, key)
            if known is None and unknown_matches:
                continue
            if known != wanted:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The budget as JSON values (the limit a float, as every cost in the JSON output)."""
        return {
            "name": self.name,
            "limit_usd": float(self.limit_usd),
            "window": str(self.window),
            "tz": self.tz,
            "scope": dict(self.scope),
            "action": self.action,
            "thresholds": list(self.thresholds),
            "notify": self.notify,
        }


#: Report filter (``reports.filters.Filters`` field) -> the scope key it filters on.
_FILTER_KEYS = {
    "sources": "source",
    "projects": "project",
    "models": "model",
    "agents": "agent",
    "hosts": "host",
}


def covered(budget: Budget, filters: Any) -> bool:
    """Whether a report with ``filters`` (:class:`~llmledger.reports.filters.Filters`) covers
    every call of ``budget``'s scope: each value filter it sets names the budget's value."""
    for field_name, key in _FILTER_KEYS.items():
        values = getattr(filters, field_name, ())
        if values and budget.scope.get(key) not in values:
            return False
    return True


def parse_scope(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` items (``agent=claude``) as a scope; raises :class:`UsageError` (field
    ``scope``) for an unknown key, a missing value or a key given twice."""
    scope: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise UsageError("scope", f"{item!r} is not KEY=VALUE (e.g. agent=claude)")
        if key not in SCOPE_KEYS:
            raise UsageError(
                "scope", f"unknown scope key {key!r}: use one of {', '.join(SCOPE_KEYS)}"
            )
        if key in scope:
            raise UsageError("scope", f"{key} is given twice")
        scope[key] = value
    return scope


def parse_thresholds(text: str | Iterable[int]) -> tuple[int, ...]:
    """Warning thresholds in percent (``"50,80,100"``), sorted, each 1-1000."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    out: set[int] = set()
    for part in parts:
        if part == "":
            continue
        try:
            value = int(part)
        except (TypeError, ValueError):
            raise UsageError("warn", f"{part!r} is not a whole percentage") from None
        if not 1 <= value <= 1000:
            raise UsageError("warn", f"a threshold is a percentage from 1 to 1000, not {value}")
        out.add(value)
    return tuple(sorted(out))


def _limit(value: Decimal | float | int | str) -> Decimal:
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise UsageError("limit", f"{value!r} is not a number of USD") from None
    if not amount.is_finite() or amount <= 0:
        raise UsageError("limit", f"a limit must be a positive number of USD, not {value}")
    if amount >= MAX_USD:
        raise UsageError("limit", f"a limit must be below {MAX_USD:,} USD")
    return amount


def _zone(tz: str | None) -> str | None:
    if tz is None or tz.strip() == "":
        return None
    try:
        ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            "tz", f"unknown time zone {tz!r}: use an IANA name such as Europe/Paris or UTC"
        ) from None
    return tz.strip()


def make_budget(
    name: str,
    limit_usd: Decimal | float | int | str,
    *,
    window: str | Window = "total",
    tz: str | None = None,
    scope: Mapping[str, str] | Iterable[str] = (),
    action: str = "block",
    thresholds: str | Iterable[int] = DEFAULT_THRESHOLDS,
    notify: str | None = None,
) -> Budget:
    """A checked :class:`Budget`; every bad value raises :class:`UsageError` whose field names
    the option at fault (``name``, ``limit``, ``window``, ``tz``, ``scope``, ``action``,
    ``warn``, ``notify``)."""
    if not _NAME.match(name):
        raise UsageError(
            "name", f"{name!r}: a budget's name is 1-64 letters, digits, '_', '.', '@', ':', '-'"
        )
    if action not in ACTIONS:
        raise UsageError("action", f"unknown action {action!r}: use block or warn")
    if notify is not None and not notify.lower().startswith(("http://", "https://")):
        raise UsageError("notify", f"{notify!r} is not an http(s):// URL")
    zone = _zone(tz)
    parsed = window if isinstance(window, Window) else Window.parse(window)
    if isinstance(scope, Mapping):
        scope = parse_scope(f"{key}={value}" for key, value in scope.items())
    else:
        scope = parse_scope(scope)
    return Budget(
        name=name,
        limit_usd=_limit(limit_usd),
        window=parsed,
        tz=zone,
        scope=scope,
        action=action,  # type: ignore[arg-type]
        thresholds=parse_thresholds(thresholds),
        notify=notify,
    )
