"""The TCP intake's accept/read/parse/answer loop (in the worker process, jobs/intakeworker.py).

A report line that parses and names a job is not answered at once: it goes to zelador in a
numbered batch (`deliver`), and its answer waits until zelador says (`ack`) that it holds the
report durably and what came of it (`OK`, or `ERR too many open runs`). A refused line is
answered `ERR <reason>` at once. Answers keep the order of the lines on each connection.

Bounded everywhere, in memory and in time:
- `max_connections` open at once. When all are taken, a new client takes the slot of the one
  that has gone longest without sending a whole line (at least EVICT_AFTER); if every one sent
  a line within it, the newcomer is told `ERR busy` (counted).
- a line must be whole within `idle_timeout` of its first byte, and at most 4 kB; an idle
  connection (nothing sent, nothing owed) is closed after `idle_timeout`. So 256 clients
  trickling a byte at a time hold no slot for longer than that, and none against a real client.
- at most MAX_INFLIGHT reports wait for zelador's word; beyond that no client is read (they wait
  in their socket buffers) until zelador catches up. One zelador has not confirmed within
  ACK_TIMEOUT is answered `ERR busy` (the client sends it again).
- refusals are counted per kind (jobs/intake.py `reason_kind`), and only REJECT_SAMPLES lines a
  round are handed on as examples: a flood of garbage costs counters, not memory; a message
  with only counts goes to zelador at most every COUNTS_EVERY (0.1 s), so such a flood wakes
  the supervision loop ten times a second, not once per round.
- 64 kB of unread answers per client (one that pipelines without reading is closed).

This module imports nothing of zelador's but the parser: the worker stays small.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

from zelador.jobs.intake import (
    LINE_CAP,
    Accepted,
    Directory,
    Rejected,
    parse_line,
    reason_kind,
)

OUT_CAP = 64 * 1024
ACCEPTS_PER_ROUND = 128
MAX_INFLIGHT = 2048  # reports sent to zelador and not confirmed yet
FRAME_REPORTS = 256  # accepted reports per batch (bounds a frame on the channel)
ACK_TIMEOUT = 30.0
EVICT_AFTER = 1.0
REJECT_SAMPLES = 4
COUNTS_EVERY = 0.1  # seconds between messages that carry only counts (a flood of garbage)
BUSY = b"ERR busy: too many connections, try again\n"


@dataclass
class Counters:
    accepted: int = 0
    rejected: int = 0  # malformed lines, unknown jobs, too long, too slow, refused by zelador
    refused: int = 0  # addresses outside `allow`
    busy: int = 0  # over max_connections, or not confirmed in time
    evicted: int = 0  # slots taken from connections that sent no whole line
    kinds: dict[str, int] = field(default_factory=dict)  # rejected, per kind

    def reject(self, reason: str) -> None:
        self.rejected += 1
        kind = reason_kind(reason)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def as_list(self) -> list[int]:
        return [self.accepted, self.rejected, self.refused, self.busy, self.evicted]


class _Slot:
    """One answer owed to a client, in its place among the others."""

    __slots__ = ("text",)

    def __init__(self, text: bytes | None = None) -> None:
        self.text = text


@dataclass
class _Client:
    sock: socket.socket
    source: str
    seen: float  # the last byte
    progress: float  # the last whole line (or the connect)
    partial_since: float | None = None  # the first byte of the line not yet whole
    buffer: bytes = b""
    out: bytes = b""
    owed: collections.deque[_Slot] = field(default_factory=collections.deque)
    closing: bool = False
    closed: bool = False
    mask: int = selectors.EVENT_READ  # what the selector waits for on it now


@dataclass(frozen=True)
class Limits:
    allow: Sequence[str] = ()
    max_connections: int = 256
    idle_timeout: float = 10.0


Deliver = Callable[[int, "list[Accepted]", "list[Rejected]"], None]


class IntakeServer:
    """Serves `sock` until `stop()`. `deliver(batch, accepted, samples)` gets each batch of
    accepted reports (and a few refused lines as examples); `ack(batch, verdicts)` answers them.
    `channel` (optional) is watched too: `on_channel` is called when it is readable."""

    def __init__(self, sock: socket.socket, limits: Limits, directory: Directory,
                 deliver: Deliver, channel: socket.socket | None = None,
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
        self._batch = 0
        self._unacked: dict[int, tuple[float, list[tuple[_Client, _Slot]]]] = {}
        self.inflight = 0
        self._paused = False
        self._accepted: list[Accepted] = []  # this round's
        self._waiting: list[tuple[_Client, _Slot]] = []
        self._samples: list[Rejected] = []
        self._dirty = False
        self._counted_at = 0.0

    def stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        sel = self._selector
        sel.register(self.sock, selectors.EVENT_READ, None)
        if self._channel is not None:
            sel.register(self._channel, selectors.EVENT_READ, None)
        swept = time.monotonic()
        while not self._stop:
            ready = sel.select(COUNTS_EVERY if self._dirty or self._samples else 1.0)
            for key, mask in ready:
                if key.fileobj is self.sock:
                    self._accept()
                elif key.fileobj is self._channel:
                    if self._on_channel is not None:
                        self._on_channel()
                else:
                    client = key.data
                    if mask & selectors.EVENT_READ and not client.closed:
                        self._read(client)
                    if mask & selectors.EVENT_WRITE and not client.closed:
                        self._flush(client)
            self._send_round()
            now = time.monotonic()
            if now - swept >= 0.5:
                swept = now
                self._sweep(now)
        for client in list(self._clients.values()):
            client.sock.close()
        self._clients.clear()
        sel.close()

    # --- zelador's side -------------------------------------------------------------------------

    def _send_round(self) -> None:
        if self._accepted:
            accepted, waiting = self._accepted, self._waiting
            self._accepted, self._waiting = [], []
            samples, self._samples = self._samples, []
            for i in range(0, len(accepted), FRAME_REPORTS):
                self._batch += 1
                self._unacked[self._batch] = (time.monotonic(), waiting[i:i + FRAME_REPORTS])
                self._deliver(self._batch, accepted[i:i + FRAME_REPORTS],
                              samples if i == 0 else [])
            self._dirty = False
            if self.inflight >= MAX_INFLIGHT and not self._paused:
                self._set_paused(True)
        elif ((self._dirty or self._samples)
              and time.monotonic() - self._counted_at >= COUNTS_EVERY):
            self._counted_at = time.monotonic()
            samples, self._samples = self._samples, []
            self._dirty = False
            self._deliver(0, [], samples)

    def ack(self, batch: int, verdicts: Sequence[str]) -> None:
        """zelador holds batch `batch`: answer its reports ("" is OK, else the ERR reason)."""
        got = self._unacked.pop(batch, None)
        if got is None:
            return  # answered busy meanwhile
        self._answer(got[1], verdicts)

    def _answer(self, waiting: list[tuple[_Client, _Slot]], verdicts: Sequence[str]) -> None:
        self.inflight -= len(waiting)
        touched: dict[int, _Client] = {}
        for i, (client, slot) in enumerate(waiting):
            verdict = verdicts[i] if i < len(verdicts) else "busy: no answer from zelador"
            if verdict:  # (zelador counts its own refusals per kind)
                self.counters.rejected += 1
                self.counters.accepted -= 1
                self._dirty = True
            slot.text = b"OK\n" if not verdict else f"ERR {verdict}\n".encode()
            touched[id(client)] = client
        for client in touched.values():
            if not client.closed:
                self._release(client)
        if self._paused and self.inflight < MAX_INFLIGHT // 2:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        for client in list(self._clients.values()):
            self._want(client)

    # --- clients --------------------------------------------------------------------------------

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
                self._dirty = True
                conn.close()
                continue
            now = time.monotonic()
            if len(self._clients) >= self.limits.max_connections and not self._evict(now):
                self.counters.busy += 1
                self._dirty = True
                with contextlib.suppress(OSError):
                    conn.setblocking(False)
                    conn.send(BUSY)
                conn.close()
                continue
            conn.setblocking(False)
            client = _Client(conn, f"tcp {host}", now, now)
            self._clients[conn.fileno()] = client
            self._selector.register(conn, selectors.EVENT_READ, client)

    def _evict(self, now: float) -> bool:
        """Free the slot of the client that went longest without a whole line, if that is at
        least EVICT_AFTER and it is owed nothing."""
        idle = [c for c in self._clients.values() if not c.owed]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.progress)
        if now - victim.progress < EVICT_AFTER:
            return False
        self.counters.evicted += 1
        self._dirty = True
        with contextlib.suppress(OSError):
            victim.sock.send(b"ERR busy: no whole line for a while and another client needs "
                             b"the connection\n")
        self._close(victim)
        return True

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        now = time.monotonic()
        client.seen = now
        if not chunk:  # the client is done; a last line without newline is still a report
            if client.buffer.strip():
                self._line(client, client.buffer)
            client.buffer = b""
            client.partial_since = None
            client.closing = True
            self._release(client)
            return
        data = client.buffer + chunk if client.buffer else chunk
        lines = data.split(b"\n")
        client.buffer = lines.pop()
        if lines:
            client.progress = now
        for line in lines:
            if len(line) > LINE_CAP:
                self._refuse_line(client, f"line too long (more than {LINE_CAP} bytes)", line)
                return
            if line.strip():
                self._line(client, line)
        if len(client.buffer) > LINE_CAP:
            self._refuse_line(client, f"line too long (more than {LINE_CAP} bytes)", client.buffer)
            return
        client.partial_since = (None if not client.buffer else
                                now if lines or client.partial_since is None
                                else client.partial_since)
        self._release(client)

    def _refuse_line(self, client: _Client, reason: str, line: bytes) -> None:
        """Answer ERR and close the connection (what follows on it cannot be trusted)."""
        self.counters.reject(reason)
        self._dirty = True
        if len(self._samples) < REJECT_SAMPLES:
            self._samples.append(Rejected(client.source, reason,
                                          line[:200].decode("utf-8", "replace")))
        client.buffer = b""
        client.partial_since = None
        client.owed.append(_Slot(f"ERR {reason}\n".encode()))
        client.closing = True
        self._release(client)

    def _line(self, client: _Client, line: bytes) -> None:
        raw = line.rstrip(b"\r").decode("utf-8", "replace")
        try:
            parsed = parse_line(line)
        except Exception as exc:  # a parser bug must cost this line, not the intake
            parsed = f"cannot read this line ({type(exc).__name__}: {exc}); please report it"
        if not isinstance(parsed, str):
            try:
                job = self.directory.resolve(parsed)
            except ValueError as exc:
                reason: str = str(exc)
                name = parsed.name
            else:
                slot = _Slot()
                client.owed.append(slot)
                self.counters.accepted += 1
                self.inflight += 1
                self._accepted.append(Accepted(job, parsed, client.source, raw))
                self._waiting.append((client, slot))
                return
        else:
            reason, name = parsed, None
        self.counters.reject(reason)
        self._dirty = True
        if len(self._samples) < REJECT_SAMPLES:
            self._samples.append(Rejected(client.source, reason[:500], raw[:LINE_CAP], name))
        client.owed.append(_Slot(f"ERR {reason}\n".encode()))

    def _release(self, client: _Client) -> None:
        """Answers that are ready, in order, to the client's output; then flush."""
        owed = client.owed
        while owed and owed[0].text is not None:
            client.out += owed.popleft().text or b""
        self._flush(client)

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
        if client.closing and not client.out and not client.owed:
            self._close(client)
            return
        self._want(client)

    def _want(self, client: _Client) -> None:
        read = 0 if (client.closing or self._paused) else selectors.EVENT_READ
        want = read | (selectors.EVENT_WRITE if client.out else 0)
        if want != client.mask:  # (an epoll_ctl saved per report when the answer went out)
            with contextlib.suppress(KeyError, ValueError, OSError):
                if not want:
                    self._selector.unregister(client.sock)
                elif not client.mask:
                    self._selector.register(client.sock, want, client)
                else:
                    self._selector.modify(client.sock, want, client)
            client.mask = want

    def _sweep(self, now: float) -> None:
        limit = self.limits.idle_timeout
        for client in list(self._clients.values()):
            if client.partial_since is not None and now - client.partial_since > limit:
                reason = f"line not finished within {limit:g}s of its first byte"
                with contextlib.suppress(OSError):
                    client.sock.send(f"ERR {reason}\n".encode())
                self.counters.reject(reason)
                self._dirty = True
                self._close(client)
            elif (not client.owed and not client.out and client.partial_since is None
                  and now - client.seen > limit):
                self._close(client)
        for batch in [b for b, (sent, _) in self._unacked.items() if now - sent > ACK_TIMEOUT]:
            self.counters.busy += 1
            self._answer(self._unacked.pop(batch)[1], ["busy: zelador did not confirm in time, "
                                                       "send it again"] * FRAME_REPORTS)

    def _close(self, client: _Client) -> None:
        client.closed = True
        fd = client.sock.fileno()
        if fd >= 0 and self._clients.pop(fd, None) is not None and client.mask:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(client.sock)
        client.sock.close()
