"""The thread watcher, with real threads: a dead worker is restarted with backoff and its queued
work is done; a part that runs again is cleared. And a web button the loop did not take within
5 s is answered 503 and never carried out later."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import free_port, wait_for
from zelador.config.model import Web
from zelador.runtime.degraded import Health
from zelador.runtime.loop import Loop
from zelador.runtime.threads import FIRST_PAUSE, ThreadWatch
from zelador.workers import Pool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def kill_a_worker(pool: Pool) -> None:
    """A done() that raises SystemExit ends its worker thread (nothing else can)."""
    def die(*_: object) -> None:
        raise SystemExit

    pool.submit(lambda: None, die)
    wait_for(lambda: not pool.alive(), 5, "the worker dead")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_is_restarted_and_what_was_queued_is_done():
    clock, health = Clock(), Health()
    loop = Loop(clock=clock, health=health)
    pool = Pool(1, "test")
    watch = ThreadWatch(loop)
    watch.add("check workers", pool.alive, pool.restart)
    try:
        kill_a_worker(pool)
        ran = threading.Event()
        pool.submit(ran.set)  # queued while no worker runs
        watch.look()
        assert health.is_degraded("check workers")
        assert "its thread died" in str(health.status()[0]["reason"])
        assert ran.wait(5), "the queued job ran on the new worker"
        watch.look()
        assert not health.is_degraded("check workers")
        assert [e.kind for e in health.changes()] == ["degraded", "recovered"]
        assert watch.status() == {"check workers": 1}
    finally:
        pool.close()
        loop.close()


def test_restarts_back_off():
    clock, health = Clock(), Health()
    loop = Loop(clock=clock, health=health)
    restarts = []
    watch = ThreadWatch(loop)
    watch.add("fleet writer", lambda: False, lambda: restarts.append(clock.now))
    try:
        for _ in range(40):
            watch.look()
            clock.now += 0.5
        gaps = [b - a for a, b in zip(restarts, restarts[1:])]
        assert gaps[:4] == [FIRST_PAUSE, 2 * FIRST_PAUSE, 4 * FIRST_PAUSE, 8 * FIRST_PAUSE]
    finally:
        loop.close()


def test_a_restart_that_raises_is_caught_and_tried_again_later():
    clock, health = Clock(), Health()
    loop = Loop(clock=clock, health=health)
    watch = ThreadWatch(loop)

    def broken() -> None:
        raise OSError(98, "Address already in use")

    watch.add("web server", lambda: False, broken)
    try:
        watch.look()
        assert "Address already in use" in str(health.status()[0]["reason"])
        assert loop.errors == 1
    finally:
        loop.close()


def test_a_button_the_loop_did_not_take_within_5s_is_never_carried_out():
    from zelador.web.server import Snapshots, WebServer

    loop = Loop(health=Health())
    server = WebServer(Web(enabled=True, port=free_port(), allow_control=True),
                       Snapshots(loop, dict), None)
    done = []
    server.allow(lambda request: done.append(request) or {"ok": True})
    try:
        reply = server.control("comunicador", "restart")  # the loop does not turn: stuck
        assert "nothing was done" in reply["error"]
        loop.turn(max_wait=0.1)  # the loop comes back: the press was withdrawn
        assert done == []
        answered: dict[str, object] = {}
        press = threading.Thread(target=lambda: answered.update(
            server.control("comunicador", "restart")))
        press.start()
        wait_for(lambda: loop.turn(max_wait=0.05) or done, 5, "the press carried out")
        press.join(5)
        assert answered == {"ok": True}
    finally:
        server._server.server_close()
        loop.close()
