"""Telling systemd we are alive: READY, STATUS, WATCHDOG, RELOADING, STOPPING (sd_notify).

Without NOTIFY_SOCKET every call does nothing. With it, a failing send is reported once and
then ignored: the watchdog, not our error handling, is what catches a daemon that stopped working.
"""

from __future__ import annotations

import os
from typing import Callable

import sdnotify

Report = Callable[[str], None]


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None if not asked for."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid()):
        return None
    return int(usec) / 2e6


class Notifier:
    def __init__(self, report: Report) -> None:
        self._report = report
        self._complained = False
        self._status = ""
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self.enabled:
            try:
                self._notifier = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                self._complain(exc)

    def _send(self, message: str) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify(message)
        except OSError as exc:
            self._complain(exc)

    def _complain(self, exc: OSError) -> None:
        if not self._complained:
            self._complained = True
            self._report(f"cannot notify systemd at {os.environ.get('NOTIFY_SOCKET')!r}: {exc}")

    def ready(self, status: str) -> None:
        self._status = status
        self._send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def reloading(self) -> None:
        self._send("RELOADING=1\nSTATUS=reloading configuration")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping; watched programs are left running")
