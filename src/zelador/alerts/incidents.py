"""Incidents, not messages: which events open a problem, which close it, when to remind (pure).

An incident is one problem of one subject (`program comunicador gave_up`), keyed by the three.
The first event that opens it makes a `problem` notice; the same problem again while it is open
makes none (it only updates the latest message); the event that closes it makes a `recovery`
notice; while it stays open, a `reminder` every `remind_every` (if set). Flapping has no event:
a program whose exits reach `flapping` within `flapping_window` opens one, and a whole window
without an exit closes it.

Two clocks come in: `wall` (time.time()) for what people read and for reminders, which must
survive a restart of zelador; `mono` (the loop's monotonic clock) for the flapping window, so a
clock step neither invents nor hides flapping. Nothing here does I/O; the daemon turns notices
into outbox rows (alerts/outbox.py) and routes them with `route`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from zelador.alerts.problems import CLOSES, OPENS
from zelador.config.durations import format_duration
from zelador.config.model import Alerts, Rule
from zelador.events import Event

PROBLEM, REMINDER, RECOVERY = "problem", "reminder", "recovery"


@dataclass(frozen=True)
class Incident:
    subject_kind: str  # program, job, check
    subject: str
    problem: str  # gave_up, failed ... (alerts/problems.py)
    opened: float  # wall time
    message: str  # what the event that opened it said
    latest: str = ""  # what the latest event about it said ("" : nothing since)
    reminded: float = 0.0  # wall time of the last problem or reminder notice
    count: int = 1  # events about it while open

    @property
    def key(self) -> str:
        return incident_key(self.subject_kind, self.subject, self.problem)


def incident_key(subject_kind: str, subject: str, problem: str) -> str:
    return f"{subject_kind}/{subject}/{problem}"


@dataclass(frozen=True)
class Notice:
    """Something to tell: an incident opened, still open, or closed (`message`: what now)."""

    phase: str  # PROBLEM, REMINDER, RECOVERY
    incident: Incident
    at: float  # wall time
    message: str


class Incidents:
    """The open incidents and the exit times flapping is counted from."""

    def __init__(self, settings: Alerts, restored: Iterable[Incident] = (), *,
                 mono: float = 0.0) -> None:
        self.settings = settings
        self.open: dict[str, Incident] = {i.key: i for i in restored}
        self._exits: dict[str, deque[float]] = {}
        self._quiet_at: dict[str, float] = {}  # flapping program -> when a quiet window ends
        for incident in self.open.values():
            if incident.problem == "flapping":  # exits before our restart are not known
                self._quiet_at[incident.subject] = mono + settings.flapping_window

    def observe(self, event: Event, wall: float, mono: float) -> list[Notice]:
        if event.subject is None:
            return []
        kind, subject = event.subject_kind, event.subject
        notices: list[Notice] = []
        for problem in CLOSES.get((kind, event.kind), ()):
            notices += self.resolve(incident_key(kind, subject, problem), wall, event.message)
        opened = OPENS.get((kind, event.kind))
        if opened is not None:
            notices += self._open(kind, subject, opened, event.message, wall)
        if kind == "program" and event.kind == "exited":
            notices += self._count_exit(subject, event.message, wall, mono)
        return notices

    def _open(self, kind: str, subject: str, problem: str, message: str,
              wall: float) -> list[Notice]:
        key = incident_key(kind, subject, problem)
        known = self.open.get(key)
        if known is not None:
            self.open[key] = replace(known, latest=message, count=known.count + 1)
            return []
        incident = Incident(kind, subject, problem, wall, message, reminded=wall)
        self.open[key] = incident
        return [Notice(PROBLEM, incident, wall, message)]

    def _count_exit(self, subject: str, message: str, wall: float, mono: float) -> list[Notice]:
        window, limit = self.settings.flapping_window, self.settings.flapping
        exits = self._exits.setdefault(subject, deque(maxlen=limit))
        exits.append(mono)
        key = incident_key("program", subject, "flapping")
        if key in self.open:
            self._quiet_at[subject] = mono + window
            self.open[key] = replace(self.open[key], latest=message, count=self.open[key].count + 1)
            return []
        if len(exits) < limit or mono - exits[0] > window:
            return []
        self._quiet_at[subject] = mono + window
        span = format_duration(mono - exits[0])
        text = (f"{subject}: exited {limit} times within {span}, restarted each time; "
                f"last: {message.split(': ', 1)[-1]}")
        return self._open("program", subject, "flapping", text, wall)

    def resolve(self, key: str, wall: float, message: str) -> list[Notice]:
        """Close the incident `key` if it is open; its recovery notice."""
        incident = self.open.pop(key, None)
        if incident is None:
            return []
        if incident.problem == "flapping":
            self._quiet_at.pop(incident.subject, None)
            self._exits.pop(incident.subject, None)
        return [Notice(RECOVERY, incident, wall, message)]

    def tick(self, wall: float, mono: float) -> list[Notice]:
        """Reminders due and flapping that calmed down."""
        notices: list[Notice] = []
        for subject, quiet in list(self._quiet_at.items()):
            if mono >= quiet:
                span = format_duration(self.settings.flapping_window)
                notices += self.resolve(incident_key("program", subject, "flapping"), wall,
                                        f"{subject}: no exit for {span}")
        every = self.settings.remind_every
        if every is not None:
            for key, incident in list(self.open.items()):
                if wall >= incident.reminded + every:
                    self.open[key] = incident = replace(incident, reminded=wall)
                    notices.append(Notice(REMINDER, incident, wall, incident.latest or
                                          incident.message))
        return notices

    def next_in(self, wall: float, mono: float) -> float | None:
        """Seconds until `tick` has something to do, or None."""
        waits = [quiet - mono for quiet in self._quiet_at.values()]
        every = self.settings.remind_every
        if every is not None:
            waits += [i.reminded + every - wall for i in self.open.values()]
        return max(0.0, min(waits)) if waits else None

    def forget(self, keep: set[tuple[str, str]], wall: float) -> list[Notice]:
        """Close the incidents of subjects no longer in the config (`keep`: kind, name)."""
        notices: list[Notice] = []
        for key, incident in list(self.open.items()):
            base = incident.subject.split("/")[0] if incident.subject_kind == "check" else \
                incident.subject  # a check's item: "miners/rig-07"
            if (incident.subject_kind, base) not in keep:
                notices += self.resolve(key, wall, f"{incident.subject}: no longer watched "
                                        "(removed from the config)")
        return notices


def route(notice: Notice, settings: Alerts) -> tuple[str, ...]:
    """The channels a notice goes to, by the rules (no rules: every channel, every problem)."""
    everyone = tuple(c.name for c in settings.channels)
    if not settings.rules:
        return everyone
    chosen: dict[str, None] = {}
    for rule in settings.rules:
        if _matches(rule, notice):
            chosen.update(dict.fromkeys(rule.channels or everyone))
    return tuple(chosen)


def _matches(rule: Rule, notice: Notice) -> bool:
    incident = notice.incident
    if notice.phase == RECOVERY and not rule.recoveries:
        return False
    if rule.events and incident.problem not in rule.events:
        return False
    if rule.programs or rule.jobs or rule.checks:
        names = {"program": rule.programs, "job": rule.jobs,
                 "check": rule.checks}.get(incident.subject_kind, ())
        return incident.subject.split("/")[0] in names  # a check's item: "miners/rig-07"
    return True
