"""The thread watcher: every few seconds the loop asks each registered part (a thread of ours or
a helper process) whether it is alive; a dead one is marked degraded, journaled and restarted,
with a growing pause between attempts (1 s, 2 s, 4 s ... 60 s), and cleared once it has run
again. What a part held (queued rows, pending notices) is its own business: a restart gives the
same queue a new thread, so nothing queued is lost.

A part is two callables: `alive() -> bool` and `restart()`. The history writer, the outbox
(keeper and senders), the web server, the fleet writer and the check workers register here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from zelador.runtime.loop import Loop

if TYPE_CHECKING:
    from zelador.runtime.daemon import Daemon

EVERY = 2.0  # seconds between two looks
FIRST_PAUSE = 1.0
MAX_PAUSE = 60.0


@dataclass
class _Watched:
    alive: Callable[[], bool]
    restart: Callable[[], object]
    restarts: int = 0
    next_try: float = 0.0
    pause: float = FIRST_PAUSE
    dead: bool = False


class ThreadWatch:
    def __init__(self, loop: Loop, every: float = EVERY) -> None:
        self.loop = loop
        self.every = every
        self._parts: dict[str, _Watched] = {}
        self._started = False

    def add(self, part: str, alive: Callable[[], bool], restart: Callable[[], object]) -> None:
        """Watch `part` (replacing an earlier registration of the same name)."""
        self._parts[part] = _Watched(alive, restart)

    def remove(self, part: str) -> None:
        if self._parts.pop(part, None) is not None:
            self.loop.health.clear(part)

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.loop.at(self.loop.clock() + self.every, self._look, "thread watcher")

    def status(self) -> dict[str, int]:
        """Restarts per part, since zelador started."""
        return {name: w.restarts for name, w in self._parts.items() if w.restarts}

    def look(self) -> None:
        """One look at every part (the timer's work; tests call it directly)."""
        now = self.loop.clock()
        for name, watched in list(self._parts.items()):
            try:
                alive = watched.alive()
            except Exception as exc:
                self.loop.failed(name, exc)
                continue
            if alive:
                if watched.dead:
                    watched.dead = False
                    self.loop.health.clear(name)
                elif watched.pause > FIRST_PAUSE and now >= watched.next_try + MAX_PAUSE:
                    watched.pause = FIRST_PAUSE  # ran a good while since: forgive
                continue
            if not watched.dead:
                watched.dead = True
                watched.next_try = now
            if now < watched.next_try:
                continue
            watched.restarts += 1
            self.loop.health.mark(name, f"its thread died; restarting it (restart "
                                  f"{watched.restarts}, next try in {watched.pause:g}s if it "
                                  "dies again)")
            watched.next_try = now + watched.pause
            watched.pause = min(MAX_PAUSE, watched.pause * 2)
            try:
                watched.restart()
            except Exception as exc:
                self.loop.failed(name, exc)

    def _look(self) -> None:
        try:
            self.look()
        finally:
            self.loop.at(self.loop.clock() + self.every, self._look, "thread watcher")


def watch_parts(watch: ThreadWatch, daemon: Daemon) -> None:
    """Register the daemon's threads and helper process (looked up at each look: a reload may
    replace the intake, the check pool, the web server or the fleet publisher)."""
    if daemon.history is not None:
        watch.add("history writer", daemon.history.alive, daemon.history.restart)
    outbox = daemon.alerts.outbox
    if outbox is not None:
        watch.add("outbox", outbox.alive, outbox.restart)
    watch.add("web server", daemon.web.alive, daemon.web.restart)
    watch.add("fleet writer", daemon.fleet.alive, daemon.fleet.restart)
    # check probes run on workers.Crew threads made on demand per run (none lives to die)

    # the report worker respawns itself when its channel closes; this catches a respawn that
    # failed (no fds, no memory), which would otherwise never be tried again
    def intake_alive() -> bool:
        intake = daemon.intake
        return intake is None or intake._closed or intake._channel is not None

    def respawn_intake() -> None:
        if daemon.intake is not None:
            daemon.intake._respawn()

    watch.add("intake worker", intake_alive, respawn_intake)
