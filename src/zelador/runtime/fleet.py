"""This terminal in ZooKeeper and/or MQTT, wired to the loop: once a second the loop's state is
handed to each publisher (fleet/zookeeper.py, fleet/mqtt.py, threads of their own) when it
changed; what a publisher has to say about its connection is journaled on the loop thread."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from zelador.config.model import Fleet
from zelador.events import Event
from zelador.runtime.loop import Loop


class Publisher(Protocol):
    def start(self) -> None: ...

    def publish(self, doc: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def alive(self) -> bool: ...


class FleetLink:
    def __init__(self, loop: Loop, emit: Callable[[Event], None],
                 state: Callable[[], dict[str, Any]]) -> None:
        self.loop = loop
        self._emit = emit
        self._state = state  # this terminal's document, built on the loop thread
        self.publishers: list[Publisher] = []
        self._doc: dict[str, Any] = {}
        self._round = 0  # a reload's new publisher starts a round of its own
        self._settings: Fleet | None = None

    def open(self, settings: Fleet) -> None:
        self._settings = settings
        if not settings.enabled:
            return

        def say(message: str, priority: int) -> None:  # from the publishers' threads
            self.loop.post(lambda: self._emit(Event("fleet_state", message, priority=priority)))

        name = settings.name or socket.gethostname()
        if settings.zookeeper:
            try:
                from zelador.fleet.zookeeper import Publisher as ZooKeeperPublisher

                self.publishers.append(ZooKeeperPublisher(settings, name, say))
            except ImportError:
                self._emit(Event("degraded", "fleet: python3-kazoo is not installed; this "
                                 "terminal is not published to ZooKeeper", priority=3))
        if settings.mqtt:
            try:
                from zelador.fleet.mqtt import Publisher as MqttPublisher

                self.publishers.append(MqttPublisher(settings, name, say))
            except ImportError:
                self._emit(Event("degraded", "fleet: python3-paho-mqtt is not installed; this "
                                 "terminal is not published to MQTT", priority=3))
            except (OSError, ValueError) as exc:
                self._emit(Event("degraded", f"fleet: cannot set up MQTT ({exc}); this terminal "
                                 "is not published to MQTT", priority=3))
        if not self.publishers:
            return
        for publisher in self.publishers:
            publisher.start()
        self._doc = {}
        self._round += 1
        self._publish(self._round)

    def close(self) -> None:
        for publisher in self.publishers:
            publisher.close()
        self.publishers = []

    def alive(self) -> bool:
        return all(publisher.alive() for publisher in self.publishers)

    def restart(self) -> None:
        """The thread watcher's call: new publishers with the same settings."""
        if self._settings is not None:
            self.close()
            self.open(self._settings)

    def _publish(self, round_: int) -> None:
        if not self.publishers or round_ != self._round:
            return
        doc = self._state()
        if doc != self._doc:
            self._doc = doc
            stamped = {**doc, "updated_at": round(time.time(), 3)}
            for publisher in self.publishers:
                publisher.publish(stamped)
        self.loop.at(self.loop.clock() + 1.0, lambda: self._publish(round_))
