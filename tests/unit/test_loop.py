"""The loop itself, with real fds: the error boundary around every kind of callback, a ready fd
whose registration changed during the turn, signals that came before the handlers existed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from zelador import early
from zelador.events import Event
from zelador.programs.pidfd import SUPPORTED, Watches
from zelador.programs.states import Instance
from zelador.runtime.degraded import Health
from zelador.runtime.loop import Loop


def boom() -> None:
    raise ValueError("boom")


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def loop(health: Health):
    loop = Loop(health=health)
    try:
        yield loop
    finally:
        loop.close()


def readable_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.write(w, b"x")
    return r, w


def test_a_raising_fd_callback_is_caught_counted_and_marks_its_part(loop: Loop, health: Health):
    r, w = readable_pipe()
    ran = []
    try:
        loop.watch(r, boom, "reader")
        loop.post(lambda: ran.append("posted"))
        loop.turn(max_wait=1.0)
        loop.turn(max_wait=1.0)  # still readable: fails again, the same kind
        assert ran == ["posted"]  # the rest of the turn went on
        assert loop.errors == 2
        [part] = health.status()
        assert part["part"] == "reader" and part["count"] == 2
        assert "ValueError: boom" in str(part["reason"])
        said = health.changes()
        assert [e.kind for e in said] == ["degraded"]  # journaled once per kind, not per failure
        assert "Traceback" in (said[0].field("detail") or "")
        assert said[0].field("part") == "reader"
    finally:
        loop.unwatch(r)
        os.close(r)
        os.close(w)


def test_a_part_that_works_again_is_cleared_and_said_once(loop: Loop, health: Health):
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("once")

    loop.post(flaky, "flaky")
    loop.turn(max_wait=0.1)
    assert health.is_degraded("flaky")
    loop.post(flaky, "flaky")
    loop.turn(max_wait=0.1)
    assert not health.is_degraded("flaky")
    assert [e.kind for e in health.changes()] == ["degraded", "recovered"]


def test_timers_posted_work_hooks_and_signals_each_have_a_boundary(loop: Loop, health: Health):
    ran = []
    loop.at(loop.clock(), boom, "timer")
    loop.at(loop.clock(), lambda: ran.append("timer"))
    loop.post(boom, "posted")
    loop.post(lambda: ran.append("posted"))
    loop.after_turn(boom, "hook")
    loop.after_turn(lambda: ran.append("hook"))
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        loop.on_signal(signal.SIGUSR1, boom)
        os.kill(os.getpid(), signal.SIGUSR1)
        loop.turn(max_wait=1.0)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert sorted(ran) == ["hook", "posted", "timer"]
    assert {p["part"] for p in health.status()} == {"timer", "posted", "hook", "signal SIGUSR1"}


def test_a_deep_recursion_in_a_callback_does_not_end_the_loop(loop: Loop, health: Health):
    def deep(n: int = 0) -> int:
        return deep(n + 1)

    loop.post(deep, "deep")
    loop.turn(max_wait=0.1)
    assert "RecursionError" in str(health.status()[0]["reason"])


def test_a_guarded_sink_that_raises_never_cuts_the_emitter_short(loop: Loop, health: Health):
    class Broken:
        def emit(self, event: Event) -> None:
            raise OSError(28, "No space left on device")

    got = []

    class Fine:
        def emit(self, event: Event) -> None:
            got.append(event.kind)

    sinks = [loop.guarded(Broken(), "history"), loop.guarded(Fine(), "journal")]
    for sink in sinks:
        sink.emit(Event("exited", "x"))
    assert got == ["exited"]
    assert [p["part"] for p in health.status()] == ["history"]


def test_an_fd_closed_and_reused_in_the_same_turn_is_not_dispatched_to_the_old_owner(loop: Loop):
    """Two readable pipes; whichever callback runs first closes the other's read end and opens a
    new pipe that gets the same fd number. The old ready key must not run (neither its callback
    nor the new owner's), in this turn."""
    r1, w1 = readable_pipe()
    r2, w2 = readable_pipe()
    calls: list[str] = []
    fresh: dict[str, int] = {}

    def swap(mine: str, other_fd: int) -> None:
        calls.append(mine)
        if fresh:
            return
        loop.unwatch(other_fd)
        os.close(other_fd)
        new_r, new_w = os.pipe()  # not readable: nothing was written
        assert new_r == other_fd, "the kernel gives the lowest free number"
        fresh.update(r=new_r, w=new_w)
        loop.watch(new_r, lambda: calls.append("new owner"))

    loop.watch(r1, lambda: swap("one", r2))
    loop.watch(r2, lambda: swap("two", r1))
    try:
        loop.turn(max_wait=1.0)
        assert len(calls) == 1, calls  # the stale key of the swapped fd was skipped
        loop.turn(max_wait=0.05)
        assert "new owner" not in calls
    finally:
        for fd in (r1, r2, w1, w2, fresh.get("r"), fresh.get("w")):
            if fd is not None:
                loop.unwatch(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)


def test_an_fd_unwatched_in_the_turn_is_skipped(loop: Loop):
    r1, w1 = readable_pipe()
    r2, w2 = readable_pipe()
    calls = []

    def first(name: str, other: int) -> None:
        calls.append(name)
        loop.unwatch(other)

    loop.watch(r1, lambda: first("one", r2))
    loop.watch(r2, lambda: first("two", r1))
    try:
        loop.turn(max_wait=1.0)
        assert len(calls) == 1
    finally:
        for fd in (r1, r2):
            loop.unwatch(fd)
        for fd in (r1, r2, w1, w2):
            os.close(fd)


@pytest.mark.skipif(not SUPPORTED, reason="needs pidfd_open")
def test_a_stale_pidfd_key_cannot_declare_the_new_instance_dead(loop: Loop):
    """The supervisor's case: in one turn a command closes the pidfd of an instance that just
    died (its key is ready) and a watch on the new instance gets the same fd number. The
    supervisor's callback looks the instance up by fd: run from the stale key it would call
    died() on the live new instance."""
    old = subprocess.Popen(["sleep", "60"])
    new = subprocess.Popen(["sleep", "60"])
    watches = Watches()
    died: list[Instance] = []
    filler = fill_fd_holes()  # so the kernel's next fd is the one the old pidfd frees
    ctl_r, ctl_w = os.pipe()
    try:
        old_i = Instance(old.pid, psutil.Process(old.pid).create_time())
        new_i = Instance(new.pid, psutil.Process(new.pid).create_time())

        def pidfd_readable(fd: int) -> None:  # as Supervisor._pidfd_readable
            instance = watches.by_fd.get(fd)
            if instance is not None:
                loop.unwatch(fd)
                died.append(instance)

        def sync(wanted: list[Instance]) -> None:  # as Supervisor._sync_watches
            for fd in watches.sync(wanted, loop.unwatch):
                loop.watch(fd, lambda fd=fd: pidfd_readable(fd))

        def command() -> None:  # `zelador restart`: the old instance is replaced by the new one
            os.read(ctl_r, 1)
            sync([new_i])

        sync([old_i])
        [old_fd] = watches.by_fd
        loop.watch(ctl_r, command)
        os.write(ctl_w, b"x")  # the command is ready first ...
        old.kill()  # ... then the old instance dies: both ready in one turn
        old.wait(10)
        loop.turn(max_wait=1.0)
        assert watches.by_fd.get(old_fd) == new_i, "the new watch reused the fd number"
        loop.turn(max_wait=0.05)
        assert new_i not in died
    finally:
        watches.close_all()
        loop.unwatch(ctl_r)
        os.close(ctl_r)
        os.close(ctl_w)
        new.kill()
        new.wait()
        old.kill()
        old.wait()
        for fd in filler:
            os.close(fd)


def fill_fd_holes() -> list[int]:
    """Open /dev/null on every free fd number below our highest one."""
    top = max(int(name) for name in os.listdir("/proc/self/fd"))
    out = []
    for _ in range(top + 2):
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if fd >= top:
            os.close(fd)
            break
        out.append(fd)
    return out


def test_a_signal_noted_during_start_up_runs_on_the_first_turn(health: Health):
    """zelador/early.py holds SIGHUP from the first instruction; the loop's handler, installed
    later, still gets it (a reload), exactly once."""
    previous = signal.getsignal(signal.SIGHUP)
    ran = []
    loop = Loop(health=health)
    try:
        early.hold_signals()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0)  # the Python handler runs between bytecodes
        loop.on_signal(signal.SIGHUP, lambda: ran.append("reload"))
        loop.turn(max_wait=1.0)
        loop.turn(max_wait=0.05)
        assert ran == ["reload"]
    finally:
        for signum in early.HELD:
            if signum != signal.SIGHUP:
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                              else signal.SIG_DFL)
        loop.close()
        signal.signal(signal.SIGHUP, previous)


def test_a_readable_fd_whose_callback_always_fails_rests_instead_of_spinning(loop: Loop):
    from zelador.runtime.loop import FD_FAILURES, FD_REST

    r, w = readable_pipe()
    calls = []

    def failing() -> None:
        calls.append(time.monotonic())
        raise OSError("always")

    loop.watch(r, failing, "reader")
    try:
        until = time.monotonic() + FD_REST / 2
        while time.monotonic() < until:
            loop.turn(max_wait=0.05)
        assert len(calls) == FD_FAILURES  # then it rested: no spin
        until = time.monotonic() + FD_REST * 3
        while len(calls) == FD_FAILURES and time.monotonic() < until:
            loop.turn(max_wait=0.05)
        assert len(calls) > FD_FAILURES, "watched again after its rest"
        assert calls[FD_FAILURES] - calls[FD_FAILURES - 1] >= FD_REST * 0.9
    finally:
        loop.unwatch(r)
        os.close(r)
        os.close(w)


def test_an_unwatch_during_the_rest_is_kept(loop: Loop):
    from zelador.runtime.loop import FD_FAILURES, FD_REST

    r, w = readable_pipe()
    calls = []
    loop.watch(r, lambda: calls.append(1) or boom(), "reader")
    try:
        for _ in range(FD_FAILURES):
            loop.turn(max_wait=0.05)
        loop.unwatch(r)  # its owner lets it go while it rests
        until = time.monotonic() + FD_REST * 1.5
        while time.monotonic() < until:
            loop.turn(max_wait=0.05)
        assert len(calls) == FD_FAILURES and not loop.watching(r)
    finally:
        os.close(r)
        os.close(w)
