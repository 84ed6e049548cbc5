"""This terminal's state as retained MQTT messages, with a Last Will; and the fleet read back.

For terminals behind NAT: the terminal only connects out, the broker keeps the latest state of
every terminal (retained), and says "offline" for one whose keep-alive lapsed (its Will). No
quorum writes, no per-address connection limit (docs/fleet.md; the layout is in topics.py).

Threads: paho's network thread keeps the connection (it reconnects with backoff, 1 s doubling to
a minute); a writer thread of ours publishes the latest document when it changed, at most once
a second, and at least every REFRESH (so a reader can tell a stale state). While the broker is
unreachable only the latest document waits; nothing piles up. The loop only swaps a reference.

paho-mqtt 1.5 (Debian 11), 1.6 (Debian 12) and 2.x (Debian 13, whose Client takes a callback API
version first and passes reason codes as objects) are all spoken by `new_client` and the
callbacks' `*args`.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zelador.config.model import Fleet
from zelador.fleet.topics import (
    broker_address,
    online_topic,
    parse_message,
    state_topic,
    terminals,
)

MIN_GAP = 1.0  # seconds between two writes of our state
REFRESH = 300.0  # seconds: the state is rewritten at least this often, changed or not
CLOSE_WAIT = 1.0  # a clean stop waits this long for "online: false" to reach the broker
UNREACHABLE = 15.0  # seconds without a connection before it is journaled


def _paho() -> Any:
    """paho.mqtt.client, imported without its optional dnspython (only for connect_srv, which
    zelador does not use; 2.2 of the 3.5 MB the import costs a terminal)."""
    if "paho.mqtt.client" in sys.modules:
        return sys.modules["paho.mqtt.client"]
    block = "dns" not in sys.modules
    if block:
        sys.modules["dns"] = None  # type: ignore[assignment]  # `import dns...` -> ImportError
    try:
        import paho.mqtt.client as mqtt  # python3-paho-mqtt: only when fleet.mqtt is set
    finally:
        if block:
            del sys.modules["dns"]
    return mqtt


def new_client(client_id: str) -> Any:
    """A paho Client for 1.x and 2.x alike (2.x: callback API version 2)."""
    mqtt = _paho()

    versions = getattr(mqtt, "CallbackAPIVersion", None)
    if versions is not None:
        return mqtt.Client(versions.VERSION2, client_id=client_id, clean_session=True)
    return mqtt.Client(client_id=client_id, clean_session=True)


def _code(value: Any) -> int:
    """A CONNACK/DISCONNECT code as an int: paho 1.x passes ints, 2.x ReasonCode objects."""
    try:
        return int(getattr(value, "value", value) or 0)
    except (TypeError, ValueError):
        return -1


@dataclass(frozen=True)
class Login:
    """How to reach the broker: the settings a publisher and `zelador fleet` share."""

    url: str
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def of(cls, settings: Fleet) -> Login:
        return cls(settings.mqtt, settings.username, settings.password_file, settings.ca_file,
                   settings.client_cert, settings.client_key)


def _configure(client: Any, login: Login) -> tuple[str, int]:
    """Credentials and TLS on a client; returns (host, port). OSError names an unreadable file."""
    broker = broker_address(login.url)
    if login.username:
        from zelador.alerts.channels.common import read_secret

        password = read_secret(login.password_file) if login.password_file else None
        client.username_pw_set(login.username, password)
    if broker.tls:
        # Certificates verified against ca_file or the system's CAs, host name checked.
        client.tls_set(ca_certs=login.ca_file, certfile=login.client_cert,
                       keyfile=login.client_key)
    return broker.host, broker.port


class Publisher:
    """Publishes this terminal to `TOPIC/hosts/NAME/{state,online}` (see topics.py)."""

    def __init__(self, settings: Fleet, name: str, say: Callable[[str, int], None]) -> None:
        self.settings = settings
        self.name = name
        self._say = say  # (message, syslog priority), from paho's thread and ours
        self._state_topic = state_topic(settings.topic, name)
        self._online_topic = online_topic(settings.topic, name)
        self._doc: dict[str, Any] | None = None
        self._written: bytes | None = None  # the document last published (without its time)
        self._written_at = 0.0
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._said_down = False
        self._since = time.monotonic()  # not connected since
        self._said_unreachable = False
        self._losses: list[float] = []  # when connections were lost (a duplicate name shows)
        self._quiet_until = 0.0
        self._client = new_client(f"zelador-{name}")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.will_set(self._online_topic, b"false", qos=1, retain=True)
        self._client.reconnect_delay_set(1, 60)
        self._host, self._port = _configure(self._client, Login.of(settings))
        self._thread = threading.Thread(target=self._run, name="fleet-mqtt", daemon=True)

    def start(self) -> None:
        self._client.connect_async(self._host, self._port, keepalive=int(self.settings.keepalive))
        self._client.loop_start()  # paho's thread: connects, reconnects; never the loop's time
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def publish(self, doc: dict[str, Any]) -> None:
        """Called on the loop thread: keep the latest, wake the writer."""
        self._doc = doc
        self._wake.set()

    def close(self) -> None:
        """A clean stop: say offline ourselves (the Will is for an unclean one), then go."""
        self._stop.set()
        self._wake.set()
        self._thread.join(2.0)
        try:
            if self._connected.is_set():
                info = self._client.publish(self._online_topic, b"false", qos=1, retain=True)
                deadline = time.monotonic() + CLOSE_WAIT
                while not info.is_published() and time.monotonic() < deadline:
                    time.sleep(0.01)
            self._client.disconnect()
            self._client.loop_stop()
        except Exception:  # a clean stop never fails on the broker's account
            pass

    # paho's thread ---------------------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        code = _code(rc)
        if code != 0:
            self._say(f"fleet: MQTT broker {self.settings.mqtt} refused the connection "
                      f"(code {code}: {_refusal(code)}); retrying", 3)
            return
        client.publish(self._online_topic, b"true", qos=1, retain=True)
        self._written = None  # write the state again: the broker may have lost it
        self._connected.set()
        self._said_down = False
        self._said_unreachable = False
        if time.monotonic() >= self._quiet_until:
            self._say(f"fleet: connected to MQTT broker {self.settings.mqtt}", 6)
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        self._connected.clear()
        self._since = time.monotonic()
        # 1.x: (rc,); 2.x: (disconnect_flags, reason_code, properties)
        code = _code(args[1] if len(args) >= 3 else args[0] if args else 0)
        if self._stop.is_set() or self._said_down:
            return
        now = time.monotonic()
        self._losses = [t for t in self._losses if now - t < 60.0] + [now]
        if len(self._losses) >= 3 and now >= self._quiet_until:
            # The broker drops a session when another connects with the same client id:
            # two terminals with one fleet.name (a cloned image) take turns, every second.
            self._quiet_until = now + 600.0
            self._say(f"fleet: the connection to MQTT broker {self.settings.mqtt} was lost "
                      f"{len(self._losses)} times within a minute: is another terminal "
                      f"publishing as {self.name!r} (client id zelador-{self.name})? Give each "
                      "terminal its own fleet.name; these lines are quiet for 10 minutes", 3)
        if now < self._quiet_until:
            return
        self._said_down = True
        self._say(f"fleet: MQTT broker {self.settings.mqtt} lost (code {code}); this "
                  "terminal's state is written again once connected", 4)

    # our writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(REFRESH if self._connected.is_set() else 1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            doc = self._doc
            if not self._connected.is_set():
                self._unreachable()
                continue
            if doc is None:
                continue
            data = json.dumps(doc, sort_keys=True).encode()
            now = time.time()
            if data != self._written or now - self._written_at >= REFRESH:
                self._write(doc, data, now)
            self._stop.wait(MIN_GAP)  # a burst of changes: one write a second at most

    def _unreachable(self) -> None:
        """Not connected for UNREACHABLE seconds (refused, unreachable, a certificate that
        does not verify): said once, until connected again."""
        if self._said_unreachable or time.monotonic() - self._since < UNREACHABLE:
            return
        self._said_unreachable = True
        self._say(f"fleet: cannot connect to MQTT broker {self.settings.mqtt} for "
                  f"{UNREACHABLE:.0f}s; retrying with backoff (is it reachable from here, and "
                  "is its certificate valid for that host name?)", 4)

    def _write(self, doc: dict[str, Any], data: bytes, now: float) -> None:
        body = json.dumps({**doc, "updated_at": round(now, 3)}, sort_keys=True).encode()
        try:
            info = self._client.publish(self._state_topic, body, qos=1, retain=True)
        except (OSError, ValueError) as exc:
            self._say(f"fleet: cannot publish {self._state_topic}: {exc}", 4)
            self._wake.set()
            return
        if info.rc == 0:
            self._written, self._written_at = data, now
        else:  # not connected after all: on_connect wakes us
            self._written = None


def _refusal(code: int) -> str:
    return {1: "unacceptable protocol version", 2: "client id rejected",
            3: "server unavailable", 4: "bad user name or password", 5: "not authorized",
            134: "bad user name or password", 135: "not authorized"}.get(code, "refused")


class FleetReader:
    """Subscribes to every terminal's retained messages: `read()` once, or `follow()`."""

    def __init__(self, login: Login, topic: str, *, timeout: float = 10.0) -> None:
        self.login = login
        self.topic = topic
        self.timeout = timeout
        self.states: dict[str, Any] = {}
        self.online: dict[str, bool] = {}
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._marker_seen = threading.Event()
        self._last_message = time.monotonic()
        self._refused = ""
        self._id = f"zelador-fleet-{uuid.uuid4().hex[:12]}"
        self._marker = f"{topic}/readers/{self._id}"
        self._client = new_client(self._id)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self.connected = False
        self.complete = False  # the marker came back: every retained message was read

    def connect(self) -> None:
        """Connect and subscribe; OSError or TimeoutError says why not."""
        host, port = _configure(self._client, self.login)
        try:
            self._client.connect(host, port, keepalive=30)
        except (OSError, socket.timeout) as exc:
            raise OSError(f"cannot reach MQTT broker {self.login.url}: {exc}") from None
        self._client.loop_start()
        deadline = time.monotonic() + self.timeout
        while not self._subscribed.is_set():
            if self._refused:
                self.close()
                raise OSError(f"MQTT broker {self.login.url} refused the connection "
                              f"({self._refused})")
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"MQTT broker {self.login.url}: no answer to the "
                                   f"subscription in {self.timeout:g}s")
            time.sleep(0.01)

    def read(self, *, now: float | None = None, stale_after: float = 3 * REFRESH,
             quiet: float = 1.0) -> list[dict[str, Any]]:
        """Every terminal once the retained messages are in: when our own marker message comes
        back (the broker sends it after the retained ones), or, where the broker's ACL does not
        let us publish it, after `quiet` seconds without a message."""
        self._client.publish(self._marker, b"", qos=0, retain=False)
        deadline = time.monotonic() + self.timeout
        while not self._marker_seen.is_set() and time.monotonic() < deadline:
            if time.monotonic() - self._last_message > quiet:
                break
            time.sleep(0.005)
        self.complete = self._marker_seen.is_set()
        return self.table(now=now, stale_after=stale_after)

    def table(self, *, now: float | None = None, stale_after: float = 3 * REFRESH
              ) -> list[dict[str, Any]]:
        with self._lock:
            return terminals(dict(self.states), dict(self.online),
                             now=time.time() if now is None else now, stale_after=stale_after)

    def close(self) -> None:
        try:
            self._client.disconnect()
            self._client.loop_stop()
        except Exception:
            pass

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        code = _code(rc)
        if code != 0:
            self._refused = f"code {code}: {_refusal(code)}"
            return
        # QoS 0: a broker queues at most max_queued_messages (mosquitto: 1,000) QoS 1 messages
        # for a client and drops the rest, which would hide terminals; retained QoS 0 messages
        # are written to the connection as they come, in order (our marker last).
        client.subscribe([(f"{self.topic}/hosts/+/state", 0), (f"{self.topic}/hosts/+/online", 0),
                          (self._marker, 0)])
        self.connected = True

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        self.connected = False
        self.changed.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, *rest: Any) -> None:
        self._last_message = time.monotonic()
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self._last_message = time.monotonic()
        if message.topic == self._marker:
            self._marker_seen.set()
            return
        parsed = parse_message(message.topic, self.topic, bytes(message.payload))
        if parsed is None:
            return
        name, leaf, value = parsed
        with self._lock:
            if leaf == "online":
                self.online[name] = bool(value)
            elif value is None:
                self.states.pop(name, None)
            else:
                self.states[name] = value
        self.changed.set()
