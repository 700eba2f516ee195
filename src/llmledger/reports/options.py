"""The report options as people give them (``--since 7d``, ``--tz UTC``, ``--cost reported``,
``--group-by day,model``), read once for the CLI and the HTTP service alike, so that the same
question gets the same answer from both.

:func:`report_query` turns the options every report shares into a :class:`ReportQuery` (the
:class:`~llmledger.reports.filters.Filters`, the zone and the cost mode);
:func:`time_range` reads ``runs``' times; :func:`group_by_dimensions` and :func:`block_hours`
check the tokens and blocks reports' own. Each raises :class:`OptionError` naming the option
at fault, with the CLI's message.

Cheap to import (no SQLAlchemy): the fast reports read their options through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import cast

from llmledger.agents import AGENT_SOURCES
from llmledger.reports.filters import COST_MODES, CostMode, Filters
from llmledger.timespec import parse_range, parse_tz

__all__ = [
    "MAX_HOURS",
    "MIN_HOURS",
    "OptionError",
    "ReportQuery",
    "block_hours",
    "group_by_dimensions",
    "report_query",
    "time_range",
]

#: The block lengths ``blocks --hours`` accepts: six minutes to a year (much shorter blocks
#: hold one call each; far longer ones end past the last date Python can represent).
MIN_HOURS, MAX_HOURS = 0.1, 8760.0


class OptionError(ValueError):
    """A report option that cannot be read; ``option`` names it as the service's query
    parameter (``since``, ``tz``, ``group_by``, ...), the message as the CLI's option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """The options every report shares, read: which calls, in which zone, at which cost."""

    filters: Filters
    tz: tzinfo
    cost: CostMode


def report_query(
    *,
    since: str | None = None,
    until: str | None = None,
    tz: str | None = None,
    source: Sequence[str] = (),
    project: Sequence[str] = (),
    model: Sequence[str] = (),
    agent: Sequence[str] = (),
    cost: str = "auto",
    now: datetime | None = None,
    host: Sequence[str] = (),
    branch: Sequence[str] = (),
) -> ReportQuery:
    """The report options read: ``since``/``until`` a date, a datetime or a duration back
    from ``now`` (``7d``) in zone ``tz`` (an IANA name, ``UTC``; None for the local zone);
    an agent's name among ``source`` stands for every source its calls come from; ``host``
    the machines the calls came from (``calls.host``); ``branch`` the git branches their logs
    record (``calls.branch``). Raises
    :class:`OptionError` for the first option that cannot be read (cost, tz, since, until)."""
    if cost not in COST_MODES:
        raise OptionError("cost", f"unknown --cost {cost!r}: use one of {', '.join(COST_MODES)}")
    zone, start, end = time_range(since=since, until=until, tz=tz, now=now)
    sources = tuple(n for s in source for n in AGENT_SOURCES.get(s, (s,)))
    filters = Filters(
        start, end, sources, tuple(project), tuple(model), tuple(agent), tuple(host), tuple(branch)
    )
    return ReportQuery(filters, zone, cast(CostMode, cost))


def time_range(
    *,
    since: str | None = None,
    until: str | None = None,
    tz: str | None = None,
    now: datetime | None = None,
) -> tuple[tzinfo, datetime | None, datetime | None]:
    """The zone ``tz`` names (None: the local zone) and ``since``/``until`` read in it as
    aware datetimes (None where not given; ``until`` as a date is the end of that day).
    Raises :class:`OptionError` naming ``tz``, ``since`` or ``until``."""
    try:
        zone = parse_tz(tz)
    except ValueError as exc:
        raise OptionError("tz", str(exc)) from None
    at = now or datetime.now(UTC)
    # Each bound alone first, so that the error names the option at fault.
    for option, bounds in (("since", (since, None)), ("until", (None, until))):
        try:
            parse_range(*bounds, tz=zone, now=at)
        except ValueError as exc:
            raise OptionError(option, str(exc)) from None
    try:
        start, end = parse_range(since, until, tz=zone, now=at)
    except ValueError as exc:  # since after until
        raise OptionError("since", str(exc)) from None
    return zone, start, end


def group_by_dimensions(text: str) -> list[str]:
    """The dimensions of ``tokens --group-by`` (comma-separated names of
    :data:`~llmledger.reports.groups.DIMENSIONS`); :class:`OptionError` for an unknown or
    empty one."""
    from llmledger.reports.groups import DIMENSIONS

    dims = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in dims if d not in DIMENSIONS]
    if not dims or unknown:
        raise OptionError(
            "group_by",
            f"unknown --group-by {', '.join(unknown) or '(empty)'}: use any of "
            f"{', '.join(DIMENSIONS)}, comma-separated",
        )
    return dims


def block_hours(hours: float) -> float:
    """``blocks --hours`` checked: :data:`MIN_HOURS` to :data:`MAX_HOURS` (not NaN)."""
    if not MIN_HOURS <= hours <= MAX_HOURS:  # NaN too
        raise OptionError(
            "hours",
            f"--hours {hours:g}: a block lasts from {MIN_HOURS:g} to {MAX_HOURS:g} "
            "hours (six minutes to a year); ccusage's blocks last 5",
        )
    return hours
