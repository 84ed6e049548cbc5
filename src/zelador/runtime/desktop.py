"""Wakes the loop when logind's sessions or seats change (a login, a logout, a VT switch), for
`user: session` programs. sd_login_monitor (systemd-python's `systemd.login.Monitor`) gives an fd
that turns readable on any change, so a login is acted on within milliseconds and nothing is
polled; where it cannot be had (no logind, no systemd-python) the session files are read again
every POLL seconds, which is cheap."""

from __future__ import annotations

import os
from typing import Callable

from zelador.runtime.loop import Loop

POLL = 2.0


class DesktopWatch:
    def __init__(self, loop: Loop, changed: Callable[[], None]) -> None:
        self._loop = loop
        self._changed = changed
        self.how = "logind monitor"
        self._monitor = None
        try:
            from systemd import login

            if not os.environ.get("ZELADOR_LOGIND_DIR"):  # a test's stand-in: poll that
                self._monitor = login.Monitor()
        except (ImportError, OSError):
            self._monitor = None
        if self._monitor is not None:
            loop.watch(self._monitor.fileno(), self._ready)
        else:
            self.how = f"a look every {POLL:g}s"
            loop.at(loop.clock() + POLL, self._poll)

    def _ready(self) -> None:
        assert self._monitor is not None
        self._monitor.flush()
        self._changed()

    def _poll(self) -> None:
        self._changed()
        self._loop.at(self._loop.clock() + POLL, self._poll)

    def close(self) -> None:
        if self._monitor is not None:
            self._loop.unwatch(self._monitor.fileno())
            self._monitor.close()
