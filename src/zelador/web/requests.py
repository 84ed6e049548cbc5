"""What a request must be before the status page answers it, and how often trouble is said.

Strict framing: a body only on POST, sized by one digits-only Content-Length, never chunked (so
no second request can hide in a body, and no two parsers disagree on where one ends). A Host:
the page answers to: a page in the cashier's browser that rebinds its own name to 127.0.0.1
still sends that name, and gets 421.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from typing import Any

from zelador.config.model import Web

NOTE_EVERY = 60.0  # a kind of bad request is said at most once a minute


def framing_problem(command: str, headers: Any) -> str:
    if headers.get_all("Transfer-Encoding"):
        return "Transfer-Encoding is not accepted here"
    lengths = headers.get_all("Content-Length") or []
    if len(lengths) > 1:
        return "more than one Content-Length"
    if lengths and not (lengths[0].isascii() and lengths[0].isdigit() and len(lengths[0]) < 10):
        return "Content-Length is not a number"
    if command in ("GET", "HEAD") and lengths and int(lengths[0]) != 0:
        return f"no body on {command}"
    return ""


def host_name(value: str) -> str:
    """The host part of a Host: header, lowercase, without the port (`[::1]` kept whole)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[:value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Hosts:
    """The names a request's Host: may give: the listen address, localhost, this machine's
    name, web.hosts; the loopback addresses on a loopback listener; any address on a wildcard
    one (a rebinding page sends a name, never an address)."""

    def __init__(self, settings: Web) -> None:
        host = settings.host.lower()
        names = {host if ":" not in host else f"[{host}]", "localhost", *settings.hosts}
        with contextlib.suppress(OSError):
            names.add(socket.gethostname().lower())
        address = ipaddress.ip_address(host)
        if address.is_loopback:
            names |= {"127.0.0.1", "[::1]"}
        self.names = frozenset(names)
        self.any_address = address.is_unspecified

    def problem(self, given: list[str]) -> str:
        """"" if the request's Host: headers name this page, else why not."""
        if len(given) != 1:
            return "one Host: header is required" if not given else "more than one Host: header"
        name = host_name(given[0])
        if name in self.names or (self.any_address and _is_address(name.strip("[]"))):
            return ""
        return (f"Host {given[0][:80]!r} is not this page's (give it in web.hosts if it is a "
                "name of this terminal)")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class Notes:
    """At most one line per kind per NOTE_EVERY; the next one says how many were kept quiet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: dict[str, tuple[float, int]] = {}  # kind -> (said at, kept quiet since)

    def due(self, kind: str, text: str, now: float) -> str:
        with self._lock:
            if len(self._said) > 64:  # kinds come from a short list; bounded all the same
                self._said.clear()
            last, quiet = self._said.get(kind, (-NOTE_EVERY, 0))
            if now - last < NOTE_EVERY:
                self._said[kind] = (last, quiet + 1)
                return ""
            self._said[kind] = (now, 0)
        return text + (f" (and {quiet} more like it in the last minute)" if quiet else "")
