"""zelador's side of the TCP intake: the port, the worker process, and the reports it sends.

The port is bound here (as root: any port, and a port in use is an error at once, not in a
child); the accept/parse/answer loop runs in a worker process (jobs/intakeworker.py) that gives
up root and runs at a lower priority. Its batches arrive on a socketpair the loop watches.

Every line from the worker is checked before it is believed (a frame at most FRAME_CAP, JSON of
the agreed shape, bounded numbers and texts): a half line left by a worker killed mid-write is
dropped with it (each worker has a socketpair of its own), and anything else that does not fit
costs that worker (killed, journaled, started again), never the loop.

A batch's reports are applied to the job book at most SLICE (64) per loop turn, so a flood cannot
make a turn long, and recorded in the history with their verdict (OK, or refused: too many open
runs). Then the history is asked (`barrier`) to say when they are committed, and only then is
the worker told (`ack`), which answers its clients OK: a report answered OK is on disk, and a
kill -9 of zelador after that finds it in the history (runtime/jobs.py `replay_reports` applies
those the saved state had not). While the history is behind (HISTORY_HIGH rows queued, e.g. a
full disk) no report is applied: the worker holds at most MAX_INFLIGHT waiting and stops
reading its clients, which wait or are told busy. A worker that dies is started again after
5 s (journaled); the port stays bound meanwhile, so clients only wait.
"""

from __future__ import annotations

import collections
import contextlib
import json
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from zelador.config.model import Intake
from zelador.events import Event
from zelador.jobs.engine import Report, printable
from zelador.jobs.intake import KINDS, LINE_CAP, MAX_DURATION, RUN_ID, Directory
from zelador.jobs.intakeserver import FRAME_REPORTS
from zelador.runtime.jobs import JobBook, report_json
from zelador.runtime.loop import Loop, Timer
from zelador.store.history import ReportRow
from zelador.store.historywriter import HistoryWriter

SLICE = 64  # reports handed to the job book per loop turn (~3 ms of work at most)
HELD_BACK = 4096  # reports queued here before the channel is no longer read (memory bound)
HISTORY_HIGH = 10_000  # rows queued in the history: no more reports applied until it catches up
FRAME_CAP = 16 << 20  # bytes of one line from the worker
OUT_CAP = 1 << 20  # bytes of answers to the worker it has not read
RESPAWN_AFTER = 5.0
SAID_EVERY = 60.0
SAMPLES_KEPT = 10  # refused lines recorded in the history per SAMPLES_EVERY
SAMPLES_EVERY = 1.0
_VERBS = ("start", "ok", "fail")
_KINDS = {kind for _, kind in KINDS} | {"other"}


class BadWorker(ValueError):
    """What the worker sent is not what it may send."""


class IntakeProcess:
    def __init__(self, settings: Intake, book: JobBook, loop: Loop, *,
                 spawn: Callable[[list[str], tuple[int, ...]], subprocess.Popen[bytes]],
                 emit: Callable[[Event], None], history: HistoryWriter | None = None) -> None:
        self.settings = settings
        self.book = book
        self.loop = loop
        self._spawn_process = spawn  # Launcher.spawn_helper: the reaper leaves the worker alone
        self._emit = emit
        self.history = history
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
        self.counters = [0, 0, 0, 0, 0]  # accepted, rejected, refused, busy, evicted
        self._base = [0, 0, 0, 0, 0]  # counts of workers that died before
        self._kinds: dict[str, int] = {}  # this worker's refusals per kind, as last said
        self._pending: collections.deque[tuple[int, int, list[list[Any]]]] = collections.deque()
        self._verdicts: list[str] = []  # of the batch being applied
        self._queued = 0  # reports in _pending
        self._buffer = b""
        self._out = b""
        self._out_timer: Timer | None = None
        self._generation = 0  # one per worker: answers never go to the next one
        self._proc: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._drain_timer: Timer | None = None
        self._listening = False  # the loop watches the channel
        self._closed = False
        self._busy_said = (-SAID_EVERY, 0)
        self._samples = (0.0, 0)
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
        self._generation += 1
        self._buffer, self._out, self._kinds = b"", b"", {}
        self._channel = ours
        self.loop.watch(ours.fileno(), self._readable)
        self._listening = True

    def _readable(self) -> None:
        channel = self._channel
        if channel is None:
            return
        try:
            chunk = channel.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._died()  # a half line in the buffer goes with the worker that wrote it
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        try:
            if len(self._buffer) > FRAME_CAP:
                raise BadWorker(f"a line of more than {FRAME_CAP} bytes")
            for line in lines:
                self._take(_checked(line))
        except BadWorker as exc:
            self._condemn(str(exc))
            return
        if self._queued >= HELD_BACK and self._listening:
            # enough queued: stop reading; the worker's writes block, and so do its clients
            self.loop.unwatch(channel.fileno())
            self._listening = False
        if self._drain_timer is None:
            self._drain()

    def _condemn(self, why: str) -> None:
        """The worker sent what it may not: it goes (and is started again)."""
        self._emit(Event("degraded", f"the job report worker sent garbage ({why}); killing it "
                         "and starting another", priority=3))
        self._buffer = b""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
        self._died()

    def _take(self, batch: dict[str, Any]) -> None:
        counts = batch["c"]
        self.counters = [b + c for b, c in zip(self._base, counts)]
        kinds: dict[str, int] = batch["k"]
        delta = {k: n - self._kinds.get(k, 0) for k, n in kinds.items() if n > self._kinds.get(k, 0)}
        self._kinds = kinds
        sample = ""
        for source, reason, raw, job in batch["r"]:
            sample = f"{reason} (from {source}: {printable(raw, 80)!r})"
            self._sample(ReportRow(time.time(), source, job, None, False, reason, raw))
        if delta:
            self.book.rejections(delta, sample)
        if counts[3] + self._base[3] > self._busy_said[1]:
            self._say_busy()
        if batch["a"]:
            self._pending.append((self._generation, batch["b"], batch["a"]))
            self._queued += len(batch["a"])

    def _sample(self, row: ReportRow) -> None:
        """A refused line kept in the history as an example (SAMPLES_KEPT a second at most)."""
        if self.history is None:
            return
        start, count = self._samples
        now = self.loop.clock()
        if now - start >= SAMPLES_EVERY:
            start, count = now, 0
        if count < SAMPLES_KEPT:
            self.history.record_report(row)
            count += 1
        self._samples = (start, count)

    def _say_busy(self) -> None:
        now = self.loop.clock()
        said_at, said = self._busy_said
        if now - said_at < SAID_EVERY:
            return
        busy = self.counters[3]
        self._busy_said = (now, busy)
        self._emit(Event("intake_busy", f"the job report port {self.address[0]}:{self.address[1]}"
                         f" told {busy - said} clients busy since last said ({busy} in all): "
                         f"more than {self.settings.max_connections} connections sending lines, "
                         "or zelador behind", priority=4).with_fields(busy_total=busy))

    def _drain_next(self) -> None:
        self._drain_timer = None
        self._drain()

    def _drain(self) -> None:
        """Up to SLICE reports to the job book; the rest on the next turns."""
        if self.history is not None and self.history.backlog() >= HISTORY_HIGH:
            if self._drain_timer is None:  # the history is behind: wait for it
                self._drain_timer = self.loop.at(self.loop.clock() + 0.05, self._drain_next)
            return
        budget = SLICE
        while self._pending and budget:
            generation, number, rows = self._pending[0]
            start = len(self._verdicts)
            for row in rows[start:start + budget]:
                self._verdicts.append(self._apply(row))
            budget -= len(self._verdicts) - start
            if len(self._verdicts) == len(rows):
                self._pending.popleft()
                self._queued -= len(rows)
                verdicts, self._verdicts = self._verdicts, []
                self._confirm(generation, number, verdicts)
        self.book.arm()
        if self._pending and self._drain_timer is None:
            self._drain_timer = self.loop.at(self.loop.clock(), self._drain_next)
        if (not self._listening and self._queued < HELD_BACK // 2
                and self._channel is not None):
            self.loop.watch(self._channel.fileno(), self._readable)
            self._listening = True

    def _apply(self, row: list[Any]) -> str:
        job, verb, run_id, status, message, duration, source, raw = row
        if job not in self.book.jobs:  # (a reload removed it meanwhile)
            return f"unknown job {job!r}"
        report = Report(verb, run_id, status, message, "", duration, source)
        ident = None
        if self.history is not None:
            ident = self.history.next_report
        verdict = self.book.offer(job, report, arm=False, ident=ident)
        if self.history is not None:
            self.history.record_report(ReportRow(
                time.time(), source, job, verb, not verdict, verdict, raw, ident,
                None if verdict else report_json(report)))
        return verdict

    def _confirm(self, generation: int, number: int, verdicts: list[str]) -> None:
        """Tell the worker once the history holds the batch (at once without a history)."""
        if self.history is None:
            self._ack(generation, number, verdicts)
            return
        self.history.barrier(lambda: self.loop.post(lambda: self._ack(generation, number,
                                                                      verdicts)))

    def _ack(self, generation: int, number: int, verdicts: list[str]) -> None:
        if generation != self._generation or self._channel is None:
            return  # that worker is gone, and its clients with it
        self._out += json.dumps({"ack": number, "v": verdicts}).encode() + b"\n"
        self._send()

    def _send(self) -> None:
        self._out_timer = None
        if self._channel is None:
            return
        try:
            sent = self._channel.send(self._out)
            self._out = self._out[sent:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return  # it died: its EOF is on the way
        if len(self._out) > OUT_CAP:
            self._condemn(f"it reads none of zelador's answers ({len(self._out)} bytes unread)")
        elif self._out and self._out_timer is None:
            self._out_timer = self.loop.at(self.loop.clock() + 0.005, self._send)

    def _died(self) -> None:
        if self._channel is None or self._proc is None:
            return
        if self._listening:
            self.loop.unwatch(self._channel.fileno())
            self._listening = False
        self._channel.close()
        self._channel = None
        self._buffer, self._out = b"", b""
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
        self._out += json.dumps(_directory_message(directory)).encode() + b"\n"
        self._send()

    def status(self) -> dict[str, Any]:
        accepted, rejected, refused, busy, evicted = self.counters
        return {"listen": f"{self.address[0]}:{self.address[1]}", "accepted": accepted,
                "rejected": rejected, "refused": refused, "busy": busy, "evicted": evicted,
                "queued": self._queued,
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
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        while self._pending:  # what arrived is still applied (and recorded)
            _, _, rows = self._pending.popleft()
            for row in rows[len(self._verdicts):]:
                self._apply(row)
            self._verdicts = []
        self._queued = 0
        self.sock.close()


def _directory_message(directory: Directory) -> dict[str, Any]:
    return {"names": sorted(directory.names), "ids": {str(k): v for k, v in directory.ids.items()}}


def _checked(line: bytes) -> dict[str, Any]:
    """One line from the worker, believed only if it has the agreed shape; else BadWorker."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise BadWorker(f"not JSON: {exc}") from None
    try:
        _check(message)
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise BadWorker(f"{type(exc).__name__}: {exc}") from None
    return message  # type: ignore[no-any-return]


def _check(m: Any) -> None:
    if not isinstance(m, dict) or set(m) != {"b", "a", "r", "c", "k"}:
        raise ValueError("not a batch")
    _want(isinstance(m["b"], int) and 0 <= m["b"] < 2**53, "batch number")
    _want(isinstance(m["a"], list) and len(m["a"]) <= FRAME_REPORTS, "reports")
    for row in m["a"]:
        _want(isinstance(row, list) and len(row) == 8, "a report")
        job, verb, run, status, message, duration, source, raw = row
        _want(_text(job, LINE_CAP) and verb in _VERBS, "job or verb")
        _want(run is None or (isinstance(run, str) and bool(RUN_ID.match(run))), "run id")
        _want(status is None or (isinstance(status, int) and 0 <= status <= 255), "exit status")
        _want(duration is None or (isinstance(duration, (int, float))
                                   and 0 <= duration <= MAX_DURATION), "duration")
        _want(_text(message, LINE_CAP) and _text(source, 100) and _text(raw, LINE_CAP), "texts")
    _want(isinstance(m["r"], list) and len(m["r"]) <= 64, "refused lines")
    for row in m["r"]:
        _want(isinstance(row, list) and len(row) == 4 and _text(row[0], 100)
              and _text(row[1], 500) and _text(row[2], LINE_CAP)
              and (row[3] is None or _text(row[3], LINE_CAP)), "a refused line")
    _want(isinstance(m["c"], list) and len(m["c"]) == 5
          and all(isinstance(n, int) and 0 <= n < 2**53 for n in m["c"]), "counters")
    _want(isinstance(m["k"], dict) and all(k in _KINDS and isinstance(n, int) and 0 <= n < 2**53
                                           for k, n in m["k"].items()), "kinds")
    for value in (m["b"], *m["c"], *m["k"].values()):
        _want(not isinstance(value, bool), "a number")


def _text(value: object, cap: int) -> bool:
    return isinstance(value, str) and len(value) <= cap


def _want(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"bad {what}")
