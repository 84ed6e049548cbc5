"""Checks decide on the loop's clock, never the wall clock: a step of the wall clock (NTP fixing
a terminal's wrong RTC) neither fires nor delays a verdict. A real CheckBook on a loop with a
fake monotonic clock and a fake wall clock; only the sampler is a stand-in."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from zelador.checks import samplers
from zelador.config.model import Config, Health, Match, Probe, Program, Threshold
from zelador.events import Event
from zelador.programs.states import Instance, Phase, ProgramState
from zelador.runtime.checks import PROBE_GRACE, CheckBook
from zelador.runtime.loop import Loop

from .test_alert_desk import Wall
from .test_supervisor import FakeClock

HOUR, YEAR = 3600.0, 365 * 86400.0


class Figures:
    """The system sampler's stand-in: memory always at 99 %."""

    def system(self, rules: Any) -> dict[str, float]:
        return {"memory": 99.0}


def verdict_sample(steps: dict[int, float]) -> tuple[int, list[float | None]]:
    """Sample a rule `for: 30s` at 10 s (3 cycles) until it fails, stepping the wall clock by
    steps[n] before sample n; return the sample that failed it and the `checked` stamps."""
    clock, wall = FakeClock(), Wall()
    loop = Loop(clock)
    events: list[Event] = []

    class Sink:
        def emit(self, ev: Event) -> None:
            events.append(ev)

    rule = Threshold(name="memory", metric="memory", above=90.0, span=30.0)
    book = CheckBook(Config(path="t.yaml", system=(rule,), system_every=10.0), loop=loop,
                     sinks=[Sink()], states=dict, restart=lambda *_: None,
                     runner=lambda *_: (0, b""), wall=wall)
    book._sampler = Figures()
    stamps = []
    try:
        book.start()
        for sample in range(1, 8):
            wall.now += steps.get(sample, 0.0)
            loop.turn(max_wait=0)  # the sample is due: it goes to a worker
            deadline = time.monotonic() + 10
            while book.entries["system"].flight is not None:  # its result comes back
                assert time.monotonic() < deadline
                loop.turn(max_wait=0.5)
            stamps.append(book.status()[0]["checked"])
            if [e for e in events if e.kind == "check_failed"]:
                return sample, stamps
            clock.jump(10.0)
            wall.now += 10.0
        raise AssertionError("the rule never failed")
    finally:
        book.close()
        loop.close()


@pytest.mark.parametrize("steps", [{2: HOUR}, {2: -HOUR}, {2: YEAR, 3: -YEAR}, {3: -YEAR}])
def test_a_wall_clock_step_neither_fires_nor_delays_a_check_verdict(steps: dict[int, float]):
    quiet, _ = verdict_sample({})
    assert quiet == 3
    stepped, stamps = verdict_sample(steps)
    assert stepped == quiet
    assert stamps[1] - stamps[0] == pytest.approx(10.0 + steps.get(2, 0.0))  # people see wall


def test_a_program_uptime_is_on_the_boot_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    before = samplers.uptime(os.getpid())
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + YEAR)  # the wall clock stepped a year
    after = samplers.uptime(os.getpid())
    assert 0 <= after - before < 5.0


# --- a result is judged only for the instance it looked at; a hung run is given up on --------

OLD, NEW = Instance(100, 1000.0), Instance(200, 2000.0)


class Book:
    """A CheckBook on a fake-clock loop with one program, whose health command the test holds
    until it lets it go (`answer`)."""

    def __init__(self, fails: int = 1, timeout: float = 5.0) -> None:
        self.clock, self.events, self.restarts = FakeClock(), [], []
        self.loop = Loop(self.clock)
        self.release = threading.Event()
        self.ok = False
        health = Health(Probe("command", argv=("/bin/probe",), timeout=timeout), every=10.0,
                        fails=fails, start_after=0.0)
        prog = Program("comunicador", Match(name="C"), ("/bin/true",), health=health)
        self.states = {"comunicador": ProgramState("comunicador", Phase.RUNNING, OLD, since=0.0)}
        book = self

        class Sink:
            def emit(self, ev: Event) -> None:
                book.events.append(ev)

        def runner(*_: object) -> tuple[int | None, bytes]:
            self.release.wait(30)
            return (0 if self.ok else 1), b"not answering"

        self.book = CheckBook(Config(path="t.yaml", programs=(prog,)), loop=self.loop,
                              sinks=[Sink()], states=lambda: self.states,
                              restart=lambda name, why: self.restarts.append(name),
                              runner=runner)
        self.book.start()
        self.loop.turn(max_wait=0)  # the first run is due: its probe now waits for `release`
        self.entry = self.book.entries["comunicador.health"]
        assert self.entry.flight is not None

    def answer(self) -> None:
        self.release.set()
        deadline = time.monotonic() + 10
        while self.entry.flight is not None:
            assert time.monotonic() < deadline
            self.loop.turn(max_wait=0.5)
        self.release.clear()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def close(self) -> None:
        self.release.set()
        self.book.close()
        self.loop.close()


def test_a_health_result_for_a_previous_instance_is_dropped() -> None:
    b = Book()
    try:
        b.states["comunicador"] = ProgramState("comunicador", Phase.RUNNING, NEW, since=1.0)
        b.answer()  # the probe of OLD failed, but NEW runs now: no verdict on NEW
        assert b.kinds() == [] and b.restarts == [] and b.book.stale == 1
        assert b.book.status()[0]["state"] == "PENDING"
        b.clock.jump(10.0)
        b.loop.turn(max_wait=0)  # the next run looks at NEW, and its failure counts
        b.answer()
        assert b.kinds() == ["check_failed"] and b.restarts == ["comunicador"]
    finally:
        b.close()


def test_a_same_pid_with_another_start_time_is_another_instance() -> None:
    b = Book()
    try:
        b.states["comunicador"] = ProgramState("comunicador", Phase.RUNNING,
                                               Instance(100, 1500.0), since=1.0)
        b.answer()
        assert b.kinds() == [] and b.restarts == []
    finally:
        b.close()


def test_a_run_that_hangs_past_its_deadline_is_given_up_on_and_counted_failed() -> None:
    b = Book(timeout=5.0)
    try:
        b.clock.jump(5.0 + PROBE_GRACE)
        b.loop.turn(max_wait=0)  # the probe is overdue: a failure, counted, journaled
        assert b.kinds() == ["degraded", "check_failed"] and b.restarts == ["comunicador"]
        assert "no result within 10s" in b.events[0].message
        assert b.book.abandoned == 1
        b.states["comunicador"] = ProgramState("comunicador", Phase.RUNNING, NEW, since=16.0)
        b.clock.jump(10.0)
        b.loop.turn(max_wait=0)  # due again while it still hangs: no second thread, and the
        # new instance is not blamed for the old one's probe
        assert b.entry.flight is not None and b.book._probes is not None
        assert b.book._probes.threads == 1
        b.ok = True
        b.answer()  # it ends at last: its late result is dropped, the check runs on
        assert b.kinds() == ["degraded", "check_failed"]
        assert b.entry.timer is not None and b.entry.flight is None
    finally:
        b.close()
