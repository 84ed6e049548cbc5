"""The status page wired to the loop: the server (web/server.py, threads of its own) is given a
snapshot builder that runs on the loop thread, and, with allow_control, the daemon's request
handler; the loop's own lateness is measured here for /metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zelador.config.model import Web
from zelador.events import Event
from zelador.runtime.loop import Loop

if TYPE_CHECKING:
    from zelador.web.server import WebServer

Handler = Callable[[dict[str, Any]], dict[str, Any]]
SNAPSHOT = "web snapshot"


class WebLink:
    def __init__(self, loop: Loop, emit: Callable[[Event], None]) -> None:
        self.loop = loop
        self._emit = emit
        self.server: WebServer | None = None
        self.lag = 0.0  # how late the loop ran its last 1 s timer
        self._measuring = False
        self._opened: tuple[Web, Callable[[], dict[str, Any]], Handler, str | None] | None = None

    def open(self, settings: Web, snapshot: Callable[[], dict[str, Any]], answer: Handler,
             history_file: str | None) -> None:
        self._opened = (settings, snapshot, answer, history_file)
        if not settings.enabled:
            return
        from zelador.web.server import Snapshots, WebServer  # only when the page is on

        try:
            self.server = WebServer(settings, Snapshots(self.loop, self._guard(snapshot)),
                                    history_file)
            if settings.allow_control:
                self.server.allow(answer)
        except OSError as exc:  # the port is taken: supervision goes on without the page
            self._emit(Event("degraded", f"no status page: cannot listen on "
                             f"{settings.host}:{settings.port}: {exc.strerror}", priority=3))
        except Exception as exc:  # a broken prometheus_client: supervise all the same
            self._emit(Event("degraded", f"no status page: {type(exc).__name__}: {exc}",
                             priority=3))

    def _guard(self, snapshot: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
        """The snapshot builder behind the error boundary: if it raises, the page still gets an
        answer (what is degraded, and why) at once instead of waiting on a refresh that never
        comes, and the part is marked degraded until a build succeeds."""
        def build() -> dict[str, Any]:
            try:
                data = snapshot()
            except Exception as exc:
                self.loop.failed(SNAPSHOT, exc)
                return {"error": f"status unavailable: {type(exc).__name__}: {exc}",
                        "degraded": self.loop.health.status()}
            self.loop.worked(SNAPSHOT)
            return data
        return build

    def start(self) -> None:
        if self.server is not None:
            self.server.start()
            if not self._measuring:
                self._measuring = True
                self._measure(self.loop.clock())

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    def reconfigure(self, settings: Web) -> bool:
        """A reload's `web:`: a changed section closes the server and opens it anew (listen,
        `listen: off`, auth_file, allow_control all take effect). True if it changed."""
        if self._opened is None or settings == self._opened[0]:
            return False
        _, snapshot, answer, history_file = self._opened
        self.close()
        self.open(settings, snapshot, answer, history_file)
        self.start()
        return True

    def alive(self) -> bool:
        return self.server is None or self.server.alive()

    def restart(self) -> None:
        """The thread watcher's call: a new server with the same settings."""
        if self._opened is not None:
            settings, snapshot, answer, history_file = self._opened
            self.close()
            self.open(settings, snapshot, answer, history_file)
            self.start()

    def _measure(self, due: float) -> None:
        """How late a timer runs: a loop held up by anything shows here (and in /metrics)."""
        now = self.loop.clock()
        self.lag = max(0.0, now - due)
        later = now + 1.0
        self.loop.at(later, lambda: self._measure(later))
