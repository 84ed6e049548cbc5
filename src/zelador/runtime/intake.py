"""zelador's side of the TCP intake: the port, the worker process, and the reports it sends.

The port is bound here (as root: any port, and a port in use is an error at once, not in a
child); the accept/parse/answer loop runs in a worker process (jobs/intakeworker.py) that gives
up root and runs at a lower priority. Its batches arrive on a socketpair the loop watches, and
are fed to the job book at most `SLICE` (64) reports per loop turn, so a flood cannot make a turn
long: a dying Comunicador is seen on the next turn however many reports are queued. At most
HELD_BACK reports wait here; beyond that the channel is not read until half are applied, the
worker's writes block, and so do its clients: memory stays bounded whatever the rate. A worker
that dies is started again after 5 s (journaled); the port stays bound meanwhile, so clients
only wait.
"""

from __future__ import annotations

import collections
import contextlib
import json
import socket
import subprocess
import sys
from typing import Any, Callable, Optional

from zelador.config.model import Intake
from zelador.events import Event
from zelador.jobs.engine import Report
from zelador.jobs.intake import Directory
from zelador.runtime.jobs import JobBook
from zelador.runtime.loop import Loop, Timer

SLICE = 64  # reports handed to the job book per loop turn (~3 ms of work at most)
HELD_BACK = 4096  # reports queued here before the channel is no longer read (memory bound)
RESPAWN_AFTER = 5.0
RawRow = Callable[[str, Optional[str], Optional[str], bool, str, str], None]  # 3.9: no `|` here


class IntakeProcess:
    def __init__(self, settings: Intake, book: JobBook, loop: Loop, *,
                 spawn: Callable[[list[str], tuple[int, ...]], subprocess.Popen[bytes]],
                 emit: Callable[[Event], None], raw_row: RawRow | None = None) -> None:
        self.settings = settings
        self.book = book
        self.loop = loop
        self._spawn_process = spawn  # Launcher.spawn_helper: the reaper leaves the worker alone
        self._emit = emit
        self._raw_row = raw_row
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((settings.host, settings.port))
            self.sock.listen(1024)
        except OSError:
            self.sock.close()
            raise
        self.address = self.sock.getsockname()[:2]
        self.counters = [0, 0, 0, 0]  # accepted, rejected, refused, busy (the worker's own)
        self._base = [0, 0, 0, 0]  # counts of workers that died before
        self._pending: collections.deque[list[Any]] = collections.deque()
        self._buffer = b""
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._drain_timer: Timer | None = None
        self._listening = False  # the loop watches the channel
        self._closed = False
        self._spawn()

    # --- the worker ----------------------------------------------------------------------------

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        settings = {"allow": list(self.settings.allow),
                    "max_connections": self.settings.max_connections,
                    "idle_timeout": self.settings.idle_timeout,
                    "directory": _directory_message(self.book.directory),
                    "listen_fd": self.sock.fileno(), "channel_fd": theirs.fileno()}
        self._proc = self._spawn_process(
            [sys.executable, "-m", "zelador.jobs.intakeworker", json.dumps(settings)],
            (self.sock.fileno(), theirs.fileno()))
        theirs.close()
        ours.setblocking(False)
        self._channel = ours
        self.loop.watch(ours.fileno(), self._readable)
        self._listening = True

    def _readable(self) -> None:
        assert self._channel is not None
        try:
            chunk = self._channel.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._died()
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._take(json.loads(line))
        if len(self._pending) >= HELD_BACK and self._listening:
            # enough queued: stop reading; the worker's writes block, and so do its clients
            self.loop.unwatch(self._channel.fileno())
            self._listening = False
        if self._drain_timer is None:
            self._drain()

    def _take(self, batch: dict[str, Any]) -> None:
        self.counters = [b + c for b, c in zip(self._base, batch.get("c", (0, 0, 0, 0)))]
        for row in batch.get("a", ()):
            self._pending.append(["a", *row])
        for row in batch.get("r", ()):
            self._pending.append(["r", *row])

    def _drain_next(self) -> None:
        self._drain_timer = None
        self._drain()

    def _drain(self) -> None:
        """Up to SLICE reports to the job book; the rest on the next turns."""
        rejected: list[tuple[str, str, str, str | None]] = []
        for _ in range(min(SLICE, len(self._pending))):
            row = self._pending.popleft()
            if row[0] == "a":
                _, job, verb, run_id, status, message, duration, source, raw = row
                if self._raw_row is not None:
                    self._raw_row(source, job, verb, True, "", raw)
                if job in self.book.jobs:  # (a reload may have removed it meanwhile)
                    self.book.report(job, Report(verb, run_id, status, message, "", duration,
                                                 source), arm=False)
            else:
                _, source, reason, raw, job = row
                if self._raw_row is not None:
                    self._raw_row(source, job, None, False, reason, raw)
                rejected.append((source, reason, raw, job))
        self.book.arm()
        if rejected:
            self.book.rejections(rejected)
        if self._pending and self._drain_timer is None:
            self._drain_timer = self.loop.at(self.loop.clock(), self._drain_next)
        if (not self._listening and len(self._pending) < HELD_BACK // 2
                and self._channel is not None):
            self.loop.watch(self._channel.fileno(), self._readable)
            self._listening = True

    def _died(self) -> None:
        assert self._channel is not None and self._proc is not None
        if self._listening:
            self.loop.unwatch(self._channel.fileno())
            self._listening = False
        self._channel.close()
        self._channel = None
        code = self._proc.wait()
        self._base = list(self.counters)
        if self._closed:
            return
        self._emit(Event("degraded", f"the job report worker exited ({code}); starting it again "
                         f"in {RESPAWN_AFTER:g}s (reports to {self.address[0]}:{self.address[1]} "
                         "wait meanwhile)", priority=3))
        self.loop.at(self.loop.clock() + RESPAWN_AFTER, self._respawn)

    def _respawn(self) -> None:
        if not self._closed and self._channel is None:
            self._spawn()

    # --- from zelador --------------------------------------------------------------------------

    def update(self, directory: Directory) -> None:
        """The jobs changed (a reload): tell the worker which names and ids exist now."""
        if self._channel is None:
            return
        message = json.dumps(_directory_message(directory)).encode() + b"\n"
        with contextlib.suppress(OSError):
            self._channel.setblocking(True)
            self._channel.sendall(message)
        with contextlib.suppress(OSError):
            self._channel.setblocking(False)

    def status(self) -> dict[str, Any]:
        accepted, rejected, refused, busy = self.counters
        return {"listen": f"{self.address[0]}:{self.address[1]}", "accepted": accepted,
                "rejected": rejected, "refused": refused, "busy": busy,
                "queued": len(self._pending),
                "worker": self._proc.pid if self._proc and self._channel else None}

    def close(self) -> None:
        self._closed = True
        if self._channel is not None:
            if self._listening:
                self.loop.unwatch(self._channel.fileno())
                self._listening = False
            self._channel.close()  # the worker sees EOF and exits
            self._channel = None
        if self._proc is not None:
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        while self._pending:  # what arrived is still applied
            self._drain()
        self.sock.close()


def _directory_message(directory: Directory) -> dict[str, Any]:
    return {"names": sorted(directory.names), "ids": {str(k): v for k, v in directory.ids.items()}}

