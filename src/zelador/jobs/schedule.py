"""When a job is expected: cron expressions in a time zone, or a fixed interval.

Cron arithmetic is croniter's (python3-croniter, in Debian 11 and 12), done on the wall clock of
the job's zone; each wall time is then placed on the real time line with zoneinfo. Across the
daylight-saving changes we do what systemd's timers do (`systemd-analyze calendar` agrees, a test
holds us to it): a wall time the spring-forward night skips does not happen that night, and one
the fall-back night repeats happens once, the first time. So a job run by the timer zelador
renders is never expected at a moment systemd will not run it.

`on_calendar` translates the same expression into systemd's calendar words for that timer, and
refuses, with a reason, what systemd cannot express.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

SHORTHANDS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
              "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
              "@hourly": "0 * * * *"}
_NAMES = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|sun|mon|tue|wed|thu|fri|sat"
_ITEM = rf"(\*|(\d+|{_NAMES})(-(\d+|{_NAMES}))?)(/\d+)?"
_FIELD = re.compile(rf"^{_ITEM}(,{_ITEM})*$")
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_SEARCH_LIMIT = 2000  # wall times tried before giving up (a cron like `0 0 30 2 *` never happens)


class ScheduleError(ValueError):
    """A cron expression, interval or time zone that cannot be used; the text says why."""


@dataclass(frozen=True)
class Cron:
    """A standard five-field cron expression, in `zone` (None: the machine's local time)."""

    expression: str
    zone: str | None = None

    @property
    def fields(self) -> str:
        return SHORTHANDS.get(self.expression.strip().lower(), self.expression.strip())


def parse_cron(expression: str, zone: str | None = None) -> Cron:
    """Check the expression and the zone now, so a bad one is a config error with a line."""
    cron = Cron(expression, zone)
    parts = cron.fields.lower().split()
    if len(parts) != 5:
        raise ScheduleError(f"{expression!r}: a cron schedule has 5 fields (minute hour "
                            f"day-of-month month day-of-week), this has {len(parts)}")
    for name, part in zip(_FIELDS, parts):
        if not _FIELD.match(part):
            raise ScheduleError(f"{expression!r}: {name} field {part!r} is not standard cron "
                                "(use numbers, names, *, ranges a-b, lists a,b and steps /n)")
    try:
        _croniter(cron.fields, datetime(2000, 1, 1))
    except (ValueError, KeyError) as exc:
        raise ScheduleError(f"{expression!r}: {exc}") from None
    zone_of(zone)
    if next_after(cron, 946684800.0) is None:
        raise ScheduleError(f"{expression!r} never happens")
    return cron


def _croniter(fields: str, start: datetime) -> Any:
    """croniter, imported when a cron schedule is first used (with dateutil, 1.5 MB a daemon
    without cron jobs does not carry)."""
    from croniter import croniter  # type: ignore[import-untyped]

    return croniter(fields, start)


def zone_of(name: str | None) -> tzinfo:
    """The named zone; None: TZ if set, else /etc/localtime, else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (only for jobs on a calendar)

    if name is None:
        name = os.environ.get("TZ", "").lstrip(":") or None
        if name is None:
            try:
                with open("/etc/localtime", "rb") as stream:
                    return ZoneInfo.from_file(stream, key="localtime")
            except (OSError, ValueError):
                return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r} (names as in /usr/share/zoneinfo, "
                            "e.g. America/Fortaleza)") from None


def next_after(cron: Cron, after: float) -> float | None:
    """The first expected run strictly after `after` (seconds since the epoch)."""
    zone = zone_of(cron.zone)
    start = datetime.fromtimestamp(after, zone).replace(tzinfo=None, microsecond=0)
    walls = _croniter(cron.fields, start - timedelta(hours=3))  # a repeated hour lies behind `start`
    for _ in range(_SEARCH_LIMIT):
        try:
            wall = walls.get_next(datetime)
        except ValueError:  # croniter's "failed to find next date" (e.g. February 30th)
            return None
        moment = _placed(wall, zone)
        if moment is not None and moment > after:
            return moment
    return None


def _placed(wall: datetime, zone: tzinfo) -> float | None:
    """The instant of a wall time in `zone`: None if that night skips it, the first if repeated."""
    aware = wall.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(timezone.utc).astimezone(zone)
    if back.replace(tzinfo=None) != wall:
        return None  # in the gap of a spring-forward night
    return aware.timestamp()


# --- systemd calendar words ----------------------------------------------------------------


def on_calendar(cron: Cron) -> str:
    """The same schedule as an OnCalendar= value, e.g. `*-*-* 02:30:00 Europe/Prague`."""
    expanded = _croniter(cron.fields, datetime(2000, 1, 1)).expanded
    dom_any, dow_any = expanded[2] == ["*"], expanded[4] == ["*"]
    if not dom_any and not dow_any:
        raise ScheduleError(f"{cron.expression!r}: cron runs on the day of month OR the weekday, "
                            "systemd timers only on both; split it into two jobs")
    month = _compact(expanded[3], 2)
    dom = _compact(expanded[2], 2)
    date = f"*-{month}-{dom}"
    weekday = ""
    if not dow_any:
        monday_first = sorted({(int(d) + 6) % 7 for d in expanded[4]})  # Mon=0 .. Sun=6
        weekday = ",".join(_DAYS[(int(d) + 1) % 7] if d.isdigit() else
                           "..".join(_DAYS[(int(x) + 1) % 7] for x in d.split(".."))
                           for d in _compact(monday_first, 1).split(",")) + " "
    clock = f"{_compact(expanded[1], 2)}:{_compact(expanded[0], 2)}:00"
    zone = f" {cron.zone}" if cron.zone else ""
    return f"{weekday}{date} {clock}{zone}"


def _compact(values: Sequence[int | str], width: int) -> str:
    """A field's values in systemd's syntax: `*`, `05`, `08..18`, `00,15,30,45`."""
    if values == ["*"]:
        return "*"
    numbers = sorted(int(v) for v in values)
    runs: list[str] = []
    first = prev = numbers[0]
    for value in [*numbers[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        if prev - first >= 2:
            runs.append(f"{first:0{width}d}..{prev:0{width}d}")
        else:
            runs.extend(f"{v:0{width}d}" for v in range(first, prev + 1))
        if value is not None:
            first = prev = value
    return ",".join(runs)


def format_moment(moment: float | None, zone: str | None = None) -> str:
    """A moment for people: local date and time with the zone's abbreviation."""
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, zone_of(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")
