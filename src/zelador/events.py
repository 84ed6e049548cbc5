"""The one event record every part of zelador emits, and the Sink protocol every output implements.

An `Event` says what happened to a subject (a program today; a job or a check later): its kind
(`exited`, `started`, ... which becomes `ZELADOR_EVENT`), a one-line message for people, a syslog
priority, and extra fields (`pid`, `restarts`, `exit_status` ... which become `ZELADOR_PID` ...).
The pure engines create events as plain data; the daemon hands each one to every sink.

Sinks run on the loop thread, so a sink's `emit` must return at once: the journal (a local
datagram) may write directly; a sink that does anything slower (the history store, alert
delivery, a fleet publisher) must queue the event and do its work on a thread of its own, with a
bounded queue that drops (and counts) rather than blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PROGRAM = "program"


@dataclass(frozen=True)
class Event:
    kind: str  # ZELADOR_EVENT, e.g. "exited"; each kind has a MESSAGE_ID and a catalog entry
    message: str
    subject: str | None = None  # the program (job, check) it is about; None: zelador itself
    subject_kind: str = PROGRAM  # which ZELADOR_* field names the subject: program, job, check
    priority: int = 6  # syslog: 2 crit, 3 err, 4 warning, 5 notice, 6 info
    fields: tuple[tuple[str, str], ...] = ()  # extra ZELADOR_<NAME> fields, lowercase names

    def field(self, name: str) -> str | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def with_fields(self, **more: object) -> Event:
        """A copy with more fields (None values left out), replacing fields of the same name."""
        kept = tuple((k, v) for k, v in self.fields if k not in more)
        added = tuple((k, str(v)) for k, v in more.items() if v is not None)
        return Event(self.kind, self.message, self.subject, self.subject_kind, self.priority,
                     kept + added)


def event(kind: str, message: str, *, subject: str | None = None, priority: int = 6,
          subject_kind: str = PROGRAM, **fields: object) -> Event:
    """Build an event; fields whose value is None are left out."""
    return Event(kind, message, subject, subject_kind, priority).with_fields(**fields)


class Sink(Protocol):
    """Where events go. `emit` is called on the loop thread and must not block (see above)."""

    def emit(self, event: Event) -> None: ...
