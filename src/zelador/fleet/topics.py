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
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}
MAX_PAYLOAD = 64 * 1024  # bytes of one retained state a reader accepts (ours are ~1 KB)
MAX_TEXT = 200  # characters of one string from a document
MAX_ITEMS = 200  # entries of one list or mapping from a document
LATEST = 4102444800.0  # 2100-01-01: a later (or negative) updated_at is no time at all
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool


def broker_address(url: str) -> Broker:
    """`mqtt://host[:port]` or `mqtts://host[:port]`; ValueError says what is wrong (never
    repeating a password written into the URL)."""
    parts = urlsplit(url)
    shown = repr(url)
    if parts.username is not None or parts.password is not None:
        shown = repr(f"{parts.scheme}://<credentials>@{parts.hostname or ''}")
        raise ValueError(f"{shown}: no login in the URL (it would be shown wherever the URL "
                         "is; use fleet.username and fleet.password_file)")
    if parts.scheme not in DEFAULT_PORT or not parts.hostname:
        raise ValueError(f"{shown} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{shown}: give only the scheme, host and port (the topic is "
                         "fleet.topic)")
    try:
        port = parts.port or DEFAULT_PORT[parts.scheme]
    except ValueError:
        raise ValueError(f"{shown}: the port is not a number from 1 to 65535") from None
    return Broker(parts.hostname, port, parts.scheme == "mqtts")


def valid_topic(topic: str) -> bool:
    """A fleet topic: levels of letters, digits, _ . - (no wildcards, no leading /)."""
    return re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", topic) is not None


def clean_text(value: Any) -> str:
    """A string from another machine, safe to print: no control characters (no escape
    sequences, no line breaks forging a row), cut to MAX_TEXT."""
    text = value if isinstance(value, str) else json.dumps(value)[:MAX_TEXT]
    text = _CONTROL.sub("?", text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


def clean_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A terminal's state as published by anyone who may write its topic, reduced to the
    shapes a reader uses: strings cleaned, lists and mappings of strings, a finite time.
    A field of the wrong shape is dropped (or emptied), never trusted."""
    out: dict[str, Any] = {}
    for key in ("summary", "version"):
        if key in doc and doc[key] is not None:
            out[key] = clean_text(doc[key])
    for key in ("down", "problems"):
        value = doc.get(key)
        out[key] = [clean_text(v) for v in value[:MAX_ITEMS]] if isinstance(value, list) else []
    for key in ("programs", "jobs"):
        value = doc.get(key)
        out[key] = ({clean_text(k): clean_text(v) for k, v in list(value.items())[:MAX_ITEMS]}
                    if isinstance(value, dict) else {})
    when = doc.get("updated_at")
    out["updated_at"] = (float(when) if isinstance(when, (int, float)) and
                         not isinstance(when, bool) and math.isfinite(float(when)) and
                         0.0 <= float(when) <= LATEST else 0.0)
    for key, value in doc.items():  # anything else: kept only as a short clean string
        if key not in out and isinstance(key, str) and len(out) < MAX_ITEMS:
            out[clean_text(key)] = value if isinstance(value, (int, float, bool)) and \
                not (isinstance(value, float) and not math.isfinite(value)) else clean_text(value)
    return out


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
    name = clean_text(name)
    if leaf == "online":
        return name, leaf, payload.strip() == b"true"
    if not payload:
        return name, leaf, None  # a cleared retained message
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return (name, leaf, clean_document(doc)) if isinstance(doc, dict) else None


def terminals(states: dict[str, Any], online: dict[str, bool], *, now: float,
              stale_after: float) -> list[dict[str, Any]]:
    """The fleet table's rows, as read_fleet (ZooKeeper) gives them: each terminal's document
    plus `connected`. MISSING (connected false): its presence is not `true` (a publisher says
    `true` before its first state), or its state was not refreshed for `stale_after` seconds (a
    publisher rewrites it at least every REFRESH; a time ahead of ours counts as now)."""
    out = []
    for name in sorted(set(states) | set(online)):
        doc = states.get(name)
        if doc is None:
            continue  # presence alone: never published a state, not a terminal we know
        age = now - min(float(doc.get("updated_at") or 0.0), now)
        fresh = age <= stale_after
        out.append({**doc, "name": name, "connected": online.get(name) is True and fresh})
    return out
