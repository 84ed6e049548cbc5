"""The MQTT fleet's names, pure: the broker address, the topics, and what a reader makes of them.

Layout under `fleet.topic` (default `zelador`), every message retained, QoS 1:
    TOPIC/hosts/NAME/state    this terminal's state document (JSON, the same as the ZooKeeper node)
    TOPIC/hosts/NAME/online   "true" while its zelador is connected; "false" as its Last Will
                              (published by the broker 1.5 keep-alives after the terminal went
                              silent) and on a clean stop
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool


def broker_address(url: str) -> Broker:
    """`mqtt://host[:port]` or `mqtts://host[:port]`; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORT or not parts.hostname:
        raise ValueError(f"{url!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"{url!r}: give only the scheme, host and port (the topic is "
                         "fleet.topic, the login fleet.username)")
    try:
        port = parts.port or DEFAULT_PORT[parts.scheme]
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    return Broker(parts.hostname, port, parts.scheme == "mqtts")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def state_topic(topic: str, name: str) -> str:
    return f"{topic}/hosts/{name}/state"


def online_topic(topic: str, name: str) -> str:
    return f"{topic}/hosts/{name}/online"


def parse_message(topic: str, prefix: str, payload: bytes) -> tuple[str, str, Any] | None:
    """(terminal name, "state" or "online", value) for one retained message, or None for a
    message that is not ours or does not parse (a reader skips it)."""
    head = f"{prefix}/hosts/"
    if not topic.startswith(head):
        return None
    name, _, leaf = topic[len(head):].partition("/")
    if not name or leaf not in ("state", "online"):
        return None
    if leaf == "online":
        return name, leaf, payload.strip() == b"true"
    if not payload:
        return name, leaf, None  # a cleared retained message
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    return (name, leaf, doc) if isinstance(doc, dict) else None


def terminals(states: dict[str, Any], online: dict[str, bool], *, now: float,
              stale_after: float) -> list[dict[str, Any]]:
    """The fleet table's rows, as read_fleet (ZooKeeper) gives them: each terminal's document
    plus `connected`. MISSING (connected false): its presence is false, or its state was not
    refreshed for `stale_after` seconds (a publisher rewrites it at least every REFRESH)."""
    out = []
    for name in sorted(set(states) | set(online)):
        doc = states.get(name)
        if doc is None:
            continue  # presence alone: never published a state, not a terminal we know
        fresh = now - float(doc.get("updated_at") or 0.0) <= stale_after
        out.append({**doc, "name": name, "connected": online.get(name, True) and fresh})
    return out
