"""This terminal in ZooKeeper, wired to the loop: once a second the loop's state is handed to the
publisher (fleet/zookeeper.py, threads of its own) when it changed; what the publisher has to say
about the connection is journaled on the loop thread."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zelador.config.model import Fleet
from zelador.events import Event
from zelador.runtime.loop import Loop

if TYPE_CHECKING:
    from zelador.fleet.zookeeper import Publisher


class FleetLink:
    def __init__(self, loop: Loop, emit: Callable[[Event], None],
                 state: Callable[[], dict[str, Any]]) -> None:
        self.loop = loop
        self._emit = emit
        self._state = state  # this terminal's document, built on the loop thread
        self.publisher: Publisher | None = None
        self._doc: dict[str, Any] = {}
        self._round = 0  # a reload's new publisher starts a round of its own

    def open(self, settings: Fleet) -> None:
        if not settings.enabled:
            return
        from zelador.fleet.zookeeper import Publisher

        def say(message: str, priority: int) -> None:  # from kazoo's threads and the writer's
            self.loop.post(lambda: self._emit(Event("fleet_state", message, priority=priority)))

        try:
            self.publisher = Publisher(settings, settings.name or socket.gethostname(), say)
        except ImportError:
            self._emit(Event("degraded", "fleet: python3-kazoo is not installed; this terminal "
                             "is not published", priority=3))
            return
        self.publisher.start()
        self._doc = {}
        self._round += 1
        self._publish(self._round)

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None

    def _publish(self, round_: int) -> None:
        if self.publisher is None or round_ != self._round:
            return
        doc = self._state()
        if doc != self._doc:
            self._doc = doc
            self.publisher.publish({**doc, "updated_at": round(time.time(), 3)})
        self.loop.at(self.loop.clock() + 1.0, lambda: self._publish(round_))
