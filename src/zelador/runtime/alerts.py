"""The loop's side of alerts: a sink that feeds the incident engine and hands notices over, and
the link that opens the outbox and wires both to the daemon.

Everything here runs on the loop thread and returns at once: the engine (alerts/incidents.py)
decides, `route` picks channels, and the outbox's `submit` is a queue put. Reminders and the end
of flapping are a loop timer at the engine's next moment.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

from zelador.alerts.incidents import Incident, Incidents, Notice, incident_key, route
from zelador.alerts.outbox import Outbox, Sender
from zelador.config.model import Alerts, Channel, Config
from zelador.config.reader import check_names
from zelador.events import Event
from zelador.runtime.loop import Loop, Timer

Submit = Callable[[list[tuple[Notice, tuple[str, ...]]]], None]


class AlertDesk:
    def __init__(self, settings: Alerts, loop: Loop, submit: Submit,
                 restored: Iterable[Incident] = (),
                 wall: Callable[[], float] = time.time) -> None:
        self.loop = loop
        self._submit = submit
        self._wall = wall
        self.incidents = Incidents(settings, restored, mono=loop.clock())
        self._timer: Timer | None = None
        self._arm()

    @property
    def settings(self) -> Alerts:
        return self.incidents.settings

    def emit(self, event: Event) -> None:
        if event.subject is None:
            return
        self._send(self.incidents.observe(event, self._wall(), self.loop.clock()))

    def after_turn(self, duplicates: Mapping[str, bool]) -> None:
        """Close `duplicate` incidents of programs that run once again (`duplicates`: program ->
        whether it still has a second instance)."""
        for key, incident in list(self.incidents.open.items()):
            if incident.problem == "duplicate" and not duplicates.get(incident.subject, True):
                self._send(self.incidents.resolve(key, self._wall(),
                                                  f"{incident.subject}: one instance again"))

    def has_duplicates_open(self) -> bool:
        return any(i.problem == "duplicate" for i in self.incidents.open.values())

    def reconfigure(self, settings: Alerts, subjects: set[tuple[str, str]]) -> None:
        self.incidents.settings = settings
        self._send(self.incidents.forget(subjects, self._wall()))
        self._arm()

    def status(self) -> list[dict[str, Any]]:
        return [{"key": i.key, "subject_kind": i.subject_kind, "subject": i.subject,
                 "problem": i.problem, "opened": i.opened, "message": i.latest or i.message,
                 "count": i.count} for i in self.incidents.open.values()]

    def is_open(self, kind: str, subject: str, problem: str) -> bool:
        return incident_key(kind, subject, problem) in self.incidents.open

    def _send(self, notices: list[Notice]) -> None:
        if notices:
            self._submit([(n, route(n, self.settings)) for n in notices])
            self._arm()

    def _tick(self) -> None:
        self._timer = None
        self._send(self.incidents.tick(self._wall(), self.loop.clock()))
        self._arm()

    def _arm(self) -> None:
        wait = self.incidents.next_in(self._wall(), self.loop.clock())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if wait is not None:
            # a minute at most: the wall clock may step while we wait on the monotonic one
            self._timer = self.loop.at(self.loop.clock() + min(wait, 60.0), self._tick)


Runner = Callable[[list[str], bytes, float, dict[str, str]], tuple[Optional[int], bytes]]


class AlertLink:
    """The outbox (a keeper thread and a sender per channel, alerts/outbox.py) and the desk, as
    the daemon uses them; `desk` is None when alerts.db cannot be opened (supervision goes on)."""

    def __init__(self, loop: Loop, emit: Callable[[Event], None]) -> None:
        self.loop = loop
        self._emit = emit
        self.outbox: Outbox | None = None
        self.desk: AlertDesk | None = None

    def open(self, config: Config, path: str, runner: Runner,
             said: Callable[[Event], None]) -> None:
        """`runner` spawns an alert command (through the launcher, so the reaper leaves it to its
        Popen); `said` takes what the outbox reports (alert_sent ...) on the loop thread."""
        from zelador.alerts.channels import build

        host = config.alerts.host or config.fleet.name or socket.gethostname()

        def sender(channel: Channel) -> Sender:
            return build(channel, host, runner=runner)

        try:
            self.outbox = Outbox(path, config.alerts, build=sender, host=host,
                                 report=lambda e: self.loop.post(lambda: said(e)))
            self.outbox.keep = config.history.keep
            restored = self.outbox.restored()
        except (OSError, sqlite3.Error) as exc:  # supervision goes on without alerts
            self.outbox = None
            self._emit(Event("degraded", f"no alerts: cannot open {path}: {exc}", priority=3))
            return
        self.desk = AlertDesk(config.alerts, self.loop, self.outbox.submit, restored)

    def start(self) -> None:
        if self.outbox is not None:
            self.outbox.start()

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()  # an attempt under way may finish (2 s at most)

    def alive(self) -> bool:
        """The outbox's keeper and sender threads run (true without an outbox)."""
        return self.outbox is None or self.outbox.alive()

    def restart(self) -> list[str]:
        """Start again the outbox threads that ended (what they held is kept); their names."""
        return [] if self.outbox is None else self.outbox.restart()

    def after_turn(self, duplicates: Callable[[], Mapping[str, bool]]) -> None:
        """Close the duplicate incidents of programs that run once again."""
        if self.desk is not None and self.desk.has_duplicates_open():
            self.desk.after_turn(duplicates())

    def reconfigure(self, new: Config) -> None:
        if self.desk is None or self.outbox is None:
            return
        self.outbox.update(new.alerts)
        checks = check_names(list(new.programs), new.checks, new.system)
        self.desk.reconfigure(new.alerts, {("program", p.name) for p in new.programs} |
                              {("job", j.name) for j in new.jobs} |
                              {("check", c) for c in checks})

    def status(self) -> list[dict[str, Any]]:
        """The open incidents."""
        return self.desk.status() if self.desk is not None else []
