"""Parsing the times people type: ``--since 7d``, ``--until 2026-11-01``, ``--tz Europe/Paris``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["parse_instant", "parse_range", "parse_tz"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_tz(name: str | None) -> tzinfo:
    """The zone named (IANA name, ``UTC`` or ``local``); None means the local zone."""
    if name is None or name.lower() == "local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    if name.upper() in {"UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name like Europe/Paris, or UTC"
        ) from exc


def parse_instant(
    value: str, *, tz: tzinfo | None = None, now: datetime | None = None, end_of_day: bool = False
) -> datetime:
    """An aware datetime for ``value``: a duration back from now (``90m``, ``12h``, ``7d``,
    ``2w``), a date (``2026-11-01`` or ``20261101``: midnight in ``tz``, or the end of that day
    with ``end_of_day``), or an ISO datetime (naive ones are in ``tz``).

    Raises ValueError with an example of what is accepted, also for a duration that reaches
    back before the year 1.
    """
    zone = tz or parse_tz(None)
    current = now or datetime.now(UTC)
    match = _DURATION.match(value)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        try:
            return current - timedelta(**{_UNITS[unit]: amount})
        except OverflowError:
            raise ValueError(
                f"{value!r} reaches back before the year 1: use a shorter duration, or a date "
                "(2026-11-01)"
            ) from None
    text = value.strip()
    if re.fullmatch(r"\d{8}", text):
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        moment = datetime.combine(day, time.max if end_of_day else time.min)
        return moment.replace(tzinfo=zone)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a time: use a date (2026-11-01), a datetime "
            "(2026-11-01T09:30) or a duration back from now (90m, 12h, 7d, 2w)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def parse_range(
    since: str | None,
    until: str | None,
    *,
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as aware datetimes (None where not given); ``until`` as a
    date means the end of that day. Raises ValueError naming the option at fault, also when
    the range is empty because ``since`` is after ``until``."""
    try:
        start = parse_instant(since, tz=tz, now=now) if since else None
    except ValueError as exc:
        raise ValueError(f"--since: {exc}") from None
    try:
        end = parse_instant(until, tz=tz, now=now, end_of_day=True) if until else None
    except ValueError as exc:
        raise ValueError(f"--until: {exc}") from None
    if start is not None and end is not None and start > end:
        raise ValueError(
            f"--since {since} is after --until {until}: nothing can match; swap them, or "
            "leave one out"
        )
    return start, end
