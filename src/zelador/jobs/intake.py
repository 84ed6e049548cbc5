"""Job reports over TCP, seed 002's line protocol: `#id=25;state=OK;name=JajaBackupData`.

One line per report: fields `key=value` separated by `;`, in any order, `#` in front optional;
`state` is OK, FAIL or START (any case); the job is named by `name`, by the seed's numeric `id`,
or both (then they must agree); `msg=` is free text and takes the rest of the line (so it may
hold `;`); our additions are `run=` (pairs a start with its end), `exit=` (the exit status) and
`duration=` (seconds, as the reporter measured). Each report is answered with one line: `OK`, or
`ERR <reason>`. A blank line is no report and gets no answer.

`IntakeServer` is the accept/read/parse/answer loop over a listening socket it is given. It runs
in a worker process of its own (jobs/intakeworker.py, started by runtime/intake.py), so a flood
costs the supervision loop nothing but the batches of accepted reports it is handed. Bounded
everywhere: `max_connections` open at once (more are told `ERR busy` and closed), 4 kB per line
(a longer one is refused and its connection closed), 64 kB of unread replies per client, an idle
connection closed after `idle_timeout`. So memory stays under max_connections x 68 kB whatever
is sent. Addresses outside `allow` are closed unanswered, and counted.

This module imports nothing of zelador's: the worker stays small.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import selectors
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Callable, Union

LINE_CAP = 4096
OUT_CAP = 64 * 1024
ACCEPTS_PER_ROUND = 128
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_KEYS = ("id", "state", "name", "msg", "run", "exit", "duration")
_VERBS = {"ok": "ok", "fail": "fail", "start": "start"}


@dataclass(frozen=True)
class Parsed:
    verb: str
    name: str | None = None
    ident: int | None = None
    run_id: str | None = None
    exit_status: int | None = None
    duration: float | None = None
    message: str = ""


def parse_line(line: bytes) -> Parsed | str:
    """A report line (without its newline) as data, or the reason it is not one."""
    text = line.decode("utf-8", "replace").strip()
    if text.startswith("#"):
        text = text[1:]
    values: dict[str, str] = {}
    rest = text
    while rest:
        part, _, rest = rest.partition(";")
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep:
            return f"{_short(part)!r} is not key=value"
        if key not in _KEYS:
            return f"unknown field {_short(key)!r} (known: {', '.join(_KEYS)})"
        if key in values:
            return f"{key}= given twice"
        if key == "msg":
            values[key] = value + (";" + rest if rest else "")
            break
        values[key] = value.strip()
    if "state" not in values:
        return "no state= (OK, FAIL or START)"
    verb = _VERBS.get(values["state"].lower())
    if verb is None:
        return f"state={_short(values['state'])!r} is not OK, FAIL or START"
    if not values.get("name") and "id" not in values:
        return "no name= or id= to say which job"
    numbers: dict[str, float] = {}
    for key in ("id", "exit", "duration"):
        if key in values:
            try:
                numbers[key] = int(values[key]) if key != "duration" else float(values[key])
            except ValueError:
                return f"{key}={_short(values[key])!r} is not a number"
    if not 0 <= numbers.get("duration", 0.0) < 1e9 or numbers.get("id", 0) < 0:
        return "id= and duration= cannot be negative"
    run_id = values.get("run")
    if run_id is not None and not _RUN_ID.match(run_id):
        return "run= must be 1-64 letters, digits or _ . : @ -"
    ident, status = numbers.get("id"), numbers.get("exit")
    return Parsed(verb, name=values.get("name") or None,
                  ident=int(ident) if ident is not None else None, run_id=run_id,
                  exit_status=int(status) if status is not None else None,
                  duration=numbers.get("duration"), message=values.get("msg", ""))


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"


@dataclass(frozen=True)
class Directory:
    """Which jobs exist, by name and by the seed's id (replaced whole on reload)."""

    names: frozenset[str] = frozenset()
    ids: Mapping[int, str] = field(default_factory=dict)

    def resolve(self, parsed: Parsed) -> str:
        """The job's name, or raise ValueError with the reason."""
        by_id = self.ids.get(parsed.ident) if parsed.ident is not None else None
        if parsed.name is None:
            if by_id is None:
                raise ValueError(f"no job with id={parsed.ident}")
            return by_id
        if parsed.name not in self.names:
            raise ValueError(f"unknown job {_short(parsed.name)!r}")
        if by_id is not None and by_id != parsed.name:
            raise ValueError(f"id={parsed.ident} is job {by_id!r}, not {parsed.name!r}")
        return parsed.name


@dataclass(frozen=True)
class Accepted:
    job: str
    parsed: Parsed
    source: str
    raw: str


@dataclass(frozen=True)
class Rejected:
    source: str
    reason: str
    raw: str
    job: str | None = None


Outcome = Union[Accepted, Rejected]


@dataclass
class Counters:
    accepted: int = 0
    rejected: int = 0  # malformed lines, unknown jobs, too long
    refused: int = 0  # addresses outside `allow`
    busy: int = 0  # over max_connections


@dataclass
class _Client:
    sock: socket.socket
    source: str
    seen: float
    buffer: bytes = b""
    out: bytes = b""
    closing: bool = False
    mask: int = selectors.EVENT_READ  # what the selector waits for on it now


@dataclass(frozen=True)
class Limits:
    allow: Sequence[str] = ()
    max_connections: int = 256
    idle_timeout: float = 10.0


class IntakeServer:
    """Serves `sock` until `stop()`; `deliver` gets each round's outcomes, in order. `channel`
    (optional) is watched too: `on_channel` is called when it is readable."""

    def __init__(self, sock: socket.socket, limits: Limits, directory: Directory,
                 deliver: Callable[[list[Outcome]], None], channel: socket.socket | None = None,
                 on_channel: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.limits = limits
        self.directory = directory
        self.counters = Counters()
        self._deliver = deliver
        self._allow = [ipaddress.ip_network(net, strict=False) for net in limits.allow]
        self.sock.setblocking(False)
        self._clients: dict[int, _Client] = {}
        self._selector = selectors.DefaultSelector()
        self._channel = channel
        self._on_channel = on_channel
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        sel = self._selector
        sel.register(self.sock, selectors.EVENT_READ, None)
        if self._channel is not None:
            sel.register(self._channel, selectors.EVENT_READ, None)
        swept = time.monotonic()
        said = (0, 0)
        while not self._stop:
            ready = sel.select(1.0)
            outcomes: list[Outcome] = []
            for key, mask in ready:
                if key.fileobj is self.sock:
                    self._accept()
                elif key.fileobj is self._channel:
                    if self._on_channel is not None:
                        self._on_channel()
                else:
                    client = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(client, outcomes)
                    if mask & selectors.EVENT_WRITE and client.sock.fileno() in self._clients:
                        self._flush(client)
            counted = (self.counters.refused, self.counters.busy)
            if outcomes or counted != said:  # (refusals and busy answers have no outcome)
                said = counted
                self._deliver(outcomes)
            now = time.monotonic()
            if now - swept >= 1.0:
                swept = now
                for client in list(self._clients.values()):
                    if now - client.seen > self.limits.idle_timeout:
                        self._close(client)
        for client in list(self._clients.values()):
            client.sock.close()
        self._clients.clear()
        sel.close()

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_ROUND):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of fds: the rest wait in the backlog
                return
            host = addr[0]
            if self._allow and not any(ipaddress.ip_address(host) in net for net in self._allow):
                self.counters.refused += 1
                conn.close()
                continue
            if len(self._clients) >= self.limits.max_connections:
                self.counters.busy += 1
                with contextlib.suppress(OSError):
                    conn.setblocking(False)
                    conn.send(b"ERR busy: too many connections, try again\n")
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn, f"tcp {host}", time.monotonic())
            self._clients[conn.fileno()] = client
            self._selector.register(conn, selectors.EVENT_READ, client)

    def _read(self, client: _Client, outcomes: list[Outcome]) -> None:
        try:
            chunk = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        client.seen = time.monotonic()
        if not chunk:  # the client is done; a last line without newline is still a report
            if client.buffer.strip():
                self._line(client, client.buffer, outcomes)
            client.buffer = b""
            client.closing = True
            self._flush(client)
            return
        data = client.buffer + chunk
        lines = data.split(b"\n")
        client.buffer = lines.pop()
        for line in lines:
            if len(line) > LINE_CAP:
                self._too_long(client, outcomes)
                return
            if line.strip():
                self._line(client, line, outcomes)
        if len(client.buffer) > LINE_CAP:
            self._too_long(client, outcomes)
            return
        self._flush(client)

    def _too_long(self, client: _Client, outcomes: list[Outcome]) -> None:
        self.counters.rejected += 1
        reason = f"line too long (more than {LINE_CAP} bytes)"
        outcomes.append(Rejected(client.source, reason, client.buffer[:200].decode("utf-8", "replace")))
        client.buffer = b""
        client.out += f"ERR {reason}\n".encode()
        client.closing = True
        self._flush(client)

    def _line(self, client: _Client, line: bytes, outcomes: list[Outcome]) -> None:
        raw = line.rstrip(b"\r").decode("utf-8", "replace")
        try:
            parsed = parse_line(line)
        except Exception as exc:  # a parser bug must cost this line, not the intake thread
            parsed = f"cannot read this line ({type(exc).__name__}: {exc}); please report it"
        outcome: Outcome
        if isinstance(parsed, str):
            reply, outcome = f"ERR {parsed}", Rejected(client.source, parsed, raw)
        else:
            try:
                job = self.directory.resolve(parsed)
            except ValueError as exc:
                reply = f"ERR {exc}"
                outcome = Rejected(client.source, str(exc), raw, parsed.name)
            else:
                reply = "OK"
                outcome = Accepted(job, parsed, client.source, raw)
        if isinstance(outcome, Accepted):
            self.counters.accepted += 1
        else:
            self.counters.rejected += 1
        outcomes.append(outcome)
        client.out += reply.encode() + b"\n"

    def _flush(self, client: _Client) -> None:
        if client.out:
            try:
                sent = client.sock.send(client.out)
                client.out = client.out[sent:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close(client)
                return
        if len(client.out) > OUT_CAP:  # pipelining without reading the answers
            self._close(client)
            return
        if client.closing and not client.out:
            self._close(client)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        if client.closing:
            want = selectors.EVENT_WRITE
        if want != client.mask:  # (an epoll_ctl saved per report when the answer went out)
            client.mask = want
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(client.sock, want, client)

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0 and self._clients.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
        client.sock.close()
