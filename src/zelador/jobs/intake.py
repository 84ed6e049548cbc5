"""Job reports over TCP, seed 002's line protocol: `#id=25;state=OK;name=JajaBackupData`.

One line per report: fields `key=value` separated by `;`, in any order, `#` in front optional;
`state` is OK, FAIL or START (any case); the job is named by `name`, by the seed's numeric `id`,
or both (then they must agree); `msg=` is free text and takes the rest of the line (so it may
hold `;`); our additions are `run=` (pairs a start with its end), `exit=` (the exit status) and
`duration=` (seconds, as the reporter measured). Each report is answered with one line: `OK`, or
`ERR <reason>`. A blank line is no report and gets no answer. Numbers are bounded: `exit=` is an
exit status 0-255, `id=` below 2**31, `duration=` at most ten years (MAX_DURATION).

Every refusal has a `kind` (`reason_kind`), one of a fixed few, so rejected lines are counted per
kind in O(1) memory however many arrive.

The server that speaks it is jobs/intakeserver.py, in a worker process of its own
(jobs/intakeworker.py). This module imports nothing of zelador's: the worker stays small.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

LINE_CAP = 4096
MAX_DURATION = 10 * 365 * 86400.0  # seconds: a report's duration= beyond this is refused
MAX_IDENT = 2**31
RUN_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_KEYS = ("id", "state", "name", "msg", "run", "exit", "duration")
_VERBS = {"ok": "ok", "fail": "fail", "start": "start"}


@dataclass(frozen=True)
class Parsed:
    verb: str
    name: str | None = None
    ident: int | None = None
    run_id: str | None = None
    exit_status: int | None = None
    duration: float | None = None
    message: str = ""


def parse_line(line: bytes) -> Parsed | str:
    """A report line (without its newline) as data, or the reason it is not one."""
    text = line.decode("utf-8", "replace").strip()
    if text.startswith("#"):
        text = text[1:]
    values: dict[str, str] = {}
    rest = text
    while rest:
        part, _, rest = rest.partition(";")
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep:
            return f"{_short(part)!r} is not key=value"
        if key not in _KEYS:
            return f"unknown field {_short(key)!r} (known: {', '.join(_KEYS)})"
        if key in values:
            return f"{key}= given twice"
        if key == "msg":
            values[key] = value + (";" + rest if rest else "")
            break
        values[key] = value.strip()
    if "state" not in values:
        return "no state= (OK, FAIL or START)"
    verb = _VERBS.get(values["state"].lower())
    if verb is None:
        return f"state={_short(values['state'])!r} is not OK, FAIL or START"
    if not values.get("name") and "id" not in values:
        return "no name= or id= to say which job"
    numbers: dict[str, float] = {}
    for key in ("id", "exit", "duration"):
        if key in values:
            text = values[key]
            if len(text) > 24:  # (int() of a 4 kB digit string is slow; no valid one is long)
                return f"{key}={_short(text)!r} is out of range"
            try:
                numbers[key] = int(text) if key != "duration" else float(text)
            except ValueError:
                return f"{key}={_short(text)!r} is not a number"
    if numbers.get("duration", 0.0) < 0 or numbers.get("id", 0) < 0:
        return "id= and duration= cannot be negative"
    if not numbers.get("duration", 0.0) <= MAX_DURATION:  # (also NaN)
        return f"duration={_short(values['duration'])!r} is out of range (0 to {MAX_DURATION:.0f})"
    if not numbers.get("id", 0) < MAX_IDENT:
        return f"id={_short(values['id'])!r} is out of range (0 to {MAX_IDENT - 1})"
    if not 0 <= numbers.get("exit", 0) <= 255:
        return f"exit={_short(values['exit'])!r} is out of range (an exit status is 0 to 255)"
    run_id = values.get("run")
    if run_id is not None and not RUN_ID.match(run_id):
        return "run= must be 1-64 letters, digits or _ . : @ -"
    ident, status = numbers.get("id"), numbers.get("exit")
    return Parsed(verb, name=values.get("name") or None,
                  ident=int(ident) if ident is not None else None, run_id=run_id,
                  exit_status=int(status) if status is not None else None,
                  duration=numbers.get("duration"), message=values.get("msg", ""))


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


# The kinds of refusal, by a phrase of their reason: counts are kept per kind, never per text.
KINDS = (("not key=value", "not key=value"), ("unknown field", "unknown field"),
         ("given twice", "field given twice"), ("no state=", "no state"),
         ("is not OK, FAIL or START", "bad state"), ("no name= or id=", "no job named"),
         ("is not a number", "not a number"), ("out of range", "number out of range"),
         ("cannot be negative", "number out of range"), ("run= must be", "bad run id"),
         ("unknown job", "unknown job"), ("no job with id=", "unknown job"),
         ("is job", "name and id disagree"), ("line too long", "line too long"),
         ("line not finished", "line too slow"), ("too many open runs", "too many open runs"),
         ("cannot read this line", "parser error"))


def reason_kind(reason: str) -> str:
    """The fixed kind of a refusal's reason (the counter it goes to)."""
    for phrase, kind in KINDS:
        if phrase in reason:
            return kind
    return "other"


@dataclass(frozen=True)
class Directory:
    """Which jobs exist, by name and by the seed's id (replaced whole on reload)."""

    names: frozenset[str] = frozenset()
    ids: Mapping[int, str] = field(default_factory=dict)

    def resolve(self, parsed: Parsed) -> str:
        """The job's name, or raise ValueError with the reason."""
        by_id = self.ids.get(parsed.ident) if parsed.ident is not None else None
        if parsed.name is None:
            if by_id is None:
                raise ValueError(f"no job with id={parsed.ident}")
            return by_id
        if parsed.name not in self.names:
            raise ValueError(f"unknown job {_short(parsed.name)!r}")
        if by_id is not None and by_id != parsed.name:
            raise ValueError(f"id={parsed.ident} is job {by_id!r}, not {parsed.name!r}")
        return parsed.name


@dataclass(frozen=True)
class Accepted:
    job: str
    parsed: Parsed
    source: str
    raw: str


@dataclass(frozen=True)
class Rejected:
    source: str
    reason: str
    raw: str
    job: str | None = None


Outcome = Union[Accepted, Rejected]
