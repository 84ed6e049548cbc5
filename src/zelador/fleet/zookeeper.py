"""Publishing this terminal's state to ZooKeeper, never blocking the loop.

Layout under `fleet.path` (default /zelador):
    hosts/<name>   ephemeral: this terminal's state as JSON, while its zelador is connected
    known/<name>   persistent: the terminal was seen once, so `zelador fleet` can tell MISSING

The loop hands documents to `Publisher.publish` (a reference swap and an Event); a thread of
our own writes the latest one when it changed, at most once a second. kazoo's own threads keep
the session: SUSPENDED keeps our ephemeral node (nothing to do), LOST loses it (written again
once CONNECTED). ZooKeeper down or slow costs a journal line when the connection state changes,
and a retry: never the loop's time.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any

from zelador.config.model import Fleet
from zelador.fleet.topics import MAX_PAYLOAD, clean_document, clean_text

MIN_GAP = 1.0  # seconds between two writes of our node


class Publisher:
    def __init__(self, settings: Fleet, name: str, say: Callable[[str, int], None]) -> None:
        from kazoo.client import KazooClient  # python3-kazoo: only when fleet is configured

        self.settings = settings
        self.name = name
        self._say = say  # (message, syslog priority), from kazoo's and our threads
        self._node = f"{settings.path}/hosts/{name}"
        self._known = f"{settings.path}/known/{name}"
        self._doc: dict[str, Any] | None = None
        self._written: bytes | None = None
        self._owner: int | None = None  # the session that created our node
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._client = KazooClient(hosts=settings.zookeeper, timeout=settings.timeout,
                                   connection_retry={"max_tries": -1, "delay": 1.0,
                                                     "max_delay": 10.0},
                                   command_retry={"max_tries": 0})
        self._client.add_listener(self._state)
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)

    def start(self) -> None:
        self._client.start_async()  # connects in kazoo's own threads; never waits here
        self._thread.start()

    def alive(self) -> bool:
        """The writer thread runs (or was closed)."""
        return self._thread.is_alive() or self._stop.is_set()

    def publish(self, doc: dict[str, Any]) -> None:
        """Called on the loop thread: keep the latest, wake the writer."""
        self._doc = doc
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(2.0)
        try:
            self._client.stop()  # closes the session: our ephemeral node goes at once
            self._client.close()
        except Exception:
            pass

    def _state(self, state: str) -> None:
        """kazoo's listener (its thread, must not block)."""
        if state == "LOST":
            self._written = None  # the session is gone, and our node with it
            self._say(f"fleet: ZooKeeper session lost ({self.settings.zookeeper}); this "
                      "terminal's node is written again once connected", 4)
        elif state == "SUSPENDED":
            self._say(f"fleet: connection to ZooKeeper ({self.settings.zookeeper}) "
                      "suspended; retrying", 4)
        else:
            self._say(f"fleet: connected to ZooKeeper ({self.settings.zookeeper})", 6)
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            doc = self._doc
            if doc is None or not self._client.connected:
                continue
            data = json.dumps(doc, sort_keys=True).encode()
            if data != self._written:
                self._write(data)
            self._stop.wait(MIN_GAP)  # a burst of changes: one write a second at most

    def _write(self, data: bytes) -> None:
        from kazoo.exceptions import KazooException, NoNodeError

        client = self._client
        try:
            session = client.client_id[0] if client.client_id else None
            if session is not None and session == self._owner:
                try:
                    client.set(self._node, data)
                    self._written = data
                    return
                except NoNodeError:
                    pass
            # Our node is not known to be ours: it may be missing, or still held by our
            # previous process's session (a restart within the session timeout), which would
            # take it away when it expires and leave a running terminal MISSING. Make it ours.
            client.ensure_path(f"{self.settings.path}/hosts")
            found = client.exists(self._node)
            if found is not None:
                with contextlib.suppress(NoNodeError):
                    client.delete(self._node)
            client.create(self._node, data, ephemeral=True)
            self._owner = session
            if not client.exists(self._known):
                client.create(self._known, b"", makepath=True)
            self._written = data
        except (KazooException, OSError) as exc:
            self._say(f"fleet: cannot write {self._node}: {type(exc).__name__} {exc}".strip(), 4)
            self._wake.set()  # try again after the gap


def read_fleet(hosts: str, path: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Every terminal: its document, or MISSING for a known one without a live node."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    client = KazooClient(hosts=hosts, timeout=timeout, read_only=True)
    client.start(timeout=timeout)
    try:
        try:
            live = client.get_children(f"{path}/hosts")
        except NoNodeError:
            live = []
        try:
            known = client.get_children(f"{path}/known")
        except NoNodeError:
            known = []
        answers = {name: client.get_async(f"{path}/hosts/{name}") for name in live}
        out = []
        for name in sorted(set(live) | set(known)):
            answer = answers.get(name)
            doc: dict[str, Any] | None = None
            if answer is not None:
                try:
                    data, _ = answer.get(timeout=timeout)
                    found = json.loads(data or b"{}") if len(data or b"") <= MAX_PAYLOAD else {}
                    doc = clean_document(found) if isinstance(found, dict) else {}
                except (NoNodeError, ValueError, RecursionError):
                    doc = None
            out.append({"name": clean_text(name), "connected": doc is not None, **(doc or {})})
        return out
    finally:
        client.stop()
        client.close()
