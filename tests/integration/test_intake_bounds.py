"""Issue 19 on the report intake, end to end: bounded numbers, capped open runs, trickling
connections that cannot shut the port, and a worker whose channel carries garbage or a half
line. Real daemon, real sockets, real SQLite; the worker tests use a real Loop in process."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from tests.conftest import free_port, wait_for
from tests.integration.test_jobs import ZELADOR, history, job, jobs_config, send_lines
from zelador.errors import ControlError, UsageError
from zelador.runtime.control import ask


def test_a_huge_exit_status_is_refused_and_the_history_goes_on(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, "  backup: {every: 1h}")).start()
    line = b"#id=25;state=FAIL;name=backup;exit=99999999999999999999\n"
    assert send_lines(port, line) == ["ERR exit='99999999999999999999' is out of range (an exit "
                                      "status is 0 to 255)"]
    cli = subprocess.run([*ZELADOR, "report", "backup", "fail", "--exit-code",
                          "99999999999999999999", "--socket", z.socket],
                         capture_output=True, text=True, timeout=10)
    assert cli.returncode == 64 and "out of range" in cli.stderr
    with pytest.raises(UsageError, match="out of range"):
        ask(z.socket, {"cmd": "report", "job": "backup", "verb": "fail", "exit_status": 10**20})
    assert send_lines(port, b"state=FAIL;name=backup;exit=3;run=later\n") == ["OK"]
    wait_for(lambda: history(z, "SELECT exit_status FROM runs WHERE run_id = 'later'")
             == [(3,)], what="the history still written")


def test_one_start_more_than_max_open_runs_is_refused_and_counted(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, "  many: {every: 1h, max_open_runs: 3}")).start()
    lines = b"".join(b"name=many;state=start;run=r%d\n" % i for i in range(5))
    replies = send_lines(port, lines)
    assert replies[:3] == ["OK"] * 3
    assert all(r.startswith("ERR too many open runs (3 of job many") for r in replies[3:])
    assert len(job(z, "many")["running"]) == 3
    wait_for(lambda: ask(z.socket, {"cmd": "jobs"})["intake"]["rejected"] == 2, what="counted")
    z.wait_event("report_rejected")
    assert "too many open runs" in z.matching("report_rejected")[0]["message"]
    with pytest.raises(ControlError, match="too many open runs"):
        ask(z.socket, {"cmd": "report", "job": "many", "verb": "start", "run": "r9"})
    assert send_lines(port, b"name=many;state=ok;run=r0\nname=many;state=start;run=r3\n") == \
        ["OK", "OK"]
    assert history(z, "SELECT accepted, reason FROM reports WHERE raw LIKE '%run=r4'")[0][0] == 0


def test_trickling_connections_cannot_shut_the_port(zelador_factory) -> None:
    """Every slot taken by a client sending a byte at a time: a whole report still gets OK (the
    one that went longest without a whole line gives way), and a line that takes longer than
    idle_timeout costs its connection."""
    port = free_port()
    z = zelador_factory(jobs_config(port, "  quick: {every: 1h}",
                                    ", max_connections: 20, idle_timeout: 3s")).start()
    stop = threading.Event()
    slow: list[socket.socket] = []

    def trickle() -> None:
        while not stop.is_set():
            for conn in list(slow):
                try:
                    conn.send(b"n")
                except OSError:
                    slow.remove(conn)
            while len(slow) < 20 and not stop.is_set():  # an attacker keeps every slot
                try:
                    slow.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    break
            stop.wait(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(slow) == 20, what="every slot taken")
        time.sleep(1.5)  # (they have sent no whole line for longer than a real client takes)
        for i in range(5):
            assert send_lines(port, b"name=quick;state=ok;run=w%d\n" % i) == ["OK"]
        intake = ask(z.socket, {"cmd": "jobs"})["intake"]
        assert intake["evicted"] >= 1
        assert intake["accepted"] == 5
        wait_for(lambda: ask(z.socket, {"cmd": "jobs"})["intake"]["rejected"] >= 1, timeout=15,
                 what="a line not finished within idle_timeout refused")
    finally:
        stop.set()
        thread.join(5)
        for conn in slow:
            conn.close()


# --- the worker's channel, with a real Loop in process ----------------------------------------

FAKE_WORKER = r"""
import json, os, socket, sys, time
settings = json.loads(sys.argv[1])
channel = socket.socket(fileno=int(settings["channel_fd"]))
channel.sendall(sys.argv[2].encode("latin-1"))
if sys.argv[3] == "exit":
    os._exit(0)
time.sleep(60)
"""


def _fake_intake(payload: bytes, after: str) -> tuple[Any, Any, list[Any], list[int]]:
    from zelador.config.model import Intake, Job
    from zelador.runtime.intake import IntakeProcess
    from zelador.runtime.jobs import JobBook
    from zelador.runtime.loop import Loop

    loop = Loop()
    seen: list[Any] = []

    class Sink:
        def emit(self, event: Any) -> None:
            seen.append(event)

    book = JobBook([Job("quick", every=3600.0)], loop=loop, sinks=[Sink()])
    spawned: list[int] = []

    def spawn(argv: list[str], fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, argv[-1],
                                 payload.decode("latin-1"), after], pass_fds=fds)
        spawned.append(proc.pid)
        return proc

    intake = IntakeProcess(Intake(port=free_port()), book, loop, spawn=spawn, emit=seen.append)
    return loop, intake, seen, spawned


def _turn_until(loop: Any, predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        loop.turn(0.05)


GOOD = {"b": 1, "a": [["quick", "ok", "r1", 0, "", None, "tcp 127.0.0.1", "name=quick"]],
        "r": [], "c": [1, 0, 0, 0, 0], "k": {}}


def test_a_half_line_left_by_a_dead_worker_is_dropped_with_it() -> None:
    payload = json.dumps(GOOD).encode() + b"\n" + b'{"b": 2, "a": [["quick", "o'
    loop, intake, seen, spawned = _fake_intake(payload, "exit")
    try:
        _turn_until(loop, lambda: any("worker exited" in getattr(e, "message", "") for e in seen))
        assert intake.book.states["quick"].last is not None  # the whole line was applied
        _turn_until(loop, lambda: len(spawned) == 2, timeout=20)  # started again, no exception
    finally:
        intake.close()
        loop.close()


def test_garbage_from_the_worker_costs_the_worker_not_zelador() -> None:
    for garbage in (b"[" * 40000 + b"]" * 40000 + b"\n", b"not json\n",
                    json.dumps({**GOOD, "a": [["quick", "ok", "r1", 10**30, "", None, "t",
                                               "x"]]}).encode() + b"\n",
                    json.dumps({**GOOD, "c": [1, 2]}).encode() + b"\n",
                    json.dumps({**GOOD, "k": {"made up": 1}}).encode() + b"\n"):
        loop, intake, seen, _ = _fake_intake(garbage, "stay")
        try:
            _turn_until(loop, lambda seen=seen: any("sent garbage" in getattr(e, "message", "")
                                                    for e in seen))
            assert intake.book.states["quick"].last is None
            assert intake.status()["worker"] is None  # killed; started again after 5 s
        finally:
            intake.close()
            loop.close()


def test_a_garbage_flood_wakes_zelador_ten_times_a_second_not_per_line() -> None:
    """The worker's server in process: 2 s of garbage, pipelined; what it hands on to zelador
    is a message with counts at most every 0.1 s, and a few sample lines each."""
    from zelador.jobs.intake import Directory
    from zelador.jobs.intakeserver import IntakeServer, Limits

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    calls: list[tuple[int, int, int]] = []
    server = IntakeServer(listener, Limits(), Directory(frozenset({"quick"})),
                          lambda batch, accepted, samples: calls.append(
                              (batch, len(accepted), len(samples))))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    answered = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.setblocking(False)
            until = time.monotonic() + 2.0
            garbage = b"state=MAYBE;name=quick\n" * 1000
            left = b""
            while time.monotonic() < until:
                left = left or garbage
                with contextlib.suppress(BlockingIOError):
                    left = left[conn.send(left):]
                with contextlib.suppress(BlockingIOError):
                    answered += conn.recv(1 << 20).count(b"\n")
    finally:
        server.stop()
        thread.join(5)
        listener.close()
    assert answered > 10_000
    assert server.counters.kinds == {"bad state": server.counters.rejected}
    assert len(calls) <= 2.0 / 0.1 + 5, len(calls)
    assert all(accepted == 0 and samples <= 4 for _, accepted, samples in calls)
