"""The shell's decisions, driven with a fake clock, a fake process table and a fake launcher.

One test per decision the wiring makes (the engine's own transitions are in test_engine.py):
a dead instance leaves the table before the look, the look comes before the restart decision,
a stale cache cannot hand back a dead process, a script's exit is judged after one last look,
a repeated verdict changes nothing, check mode stops once everything settled, the next wake-up
follows the scan cadence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Callable

from zelador.config.model import Config, Match, Program, Restart
from zelador.events import Event
from zelador.programs.launcher import Child, Launcher
from zelador.programs.policy import START_POLL_FAST
from zelador.programs.procevents import Batch
from zelador.programs.states import Instance, Observed, Phase
from zelador.runtime.loop import Loop
from zelador.runtime.supervisor import COALESCE, Supervisor

A = Instance(100, 1000.0)
B = Instance(200, 2000.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def jump(self, seconds: float) -> None:
        assert seconds >= 0, "the monotonic clock never goes back"
        self.now += seconds


@dataclass
class FakeTable:
    """Answers scans with what the test put in `world`; logs every call in order."""

    world: dict[str, Observed] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def scan(self, watched: Collection[int] = (), sessions: Collection[int] = ()
             ) -> dict[str, Observed]:
        self.calls.append("scan")
        return dict(self.world)

    def configure(self, programs: Iterable[Program]) -> None:
        self.calls.append("configure")

    def forget(self, instance: Instance) -> None:
        self.calls.append(f"forget {instance.pid}")

    def family(self, instance: Instance) -> frozenset[Instance]:
        return frozenset()

    def live(self) -> set[Instance]:
        return set()

    def refresh(self, pids: Iterable[int]) -> dict[str, Observed]:
        self.calls.append(f"refresh {sorted(pids)}")
        return dict(self.world)

    def set_starts(self, starts: dict[str, int]) -> None:
        pass

    def forked(self, forks: dict[int, int]) -> None:
        pass

    def member(self, pid: int) -> tuple[Instance, Instance, str] | None:
        return None

    def remember(self, instance: Instance, members: frozenset[Instance]) -> None:
        pass

    def parent(self, instance: Instance) -> tuple[Instance, str, bool] | None:
        return None


class FakePopen:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class FakeLauncher(Launcher):
    """Records starts; a start script 'exits' when the test sets its return code."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []
        self.killed: list[tuple[str, Instance | None]] = []

    def start(self, program: Program, session: object = None, env: object = None) -> Child:
        self.started.append(program.name)
        child = Child(program.name, "start", FakePopen(5000 + len(self.started)))  # type: ignore[arg-type]
        self.children[child.pid] = child
        return child

    def kill_script(self, child: Child, spare: Instance | None = None) -> list[int]:
        self.killed.append((child.program, spare))
        return []


@dataclass
class FakeWatches:
    by_fd: dict[int, Instance] = field(default_factory=dict)
    unwatchable: set[Instance] = field(default_factory=set)

    def sync(self, wanted: Iterable[Instance],
             before_close: Callable[[int], None] = lambda fd: None) -> list[int]:
        return []

    def close_all(self) -> None:
        pass


@dataclass
class Recorder:
    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


PROG = Program("comunicador", Match(name="Comunicador"), ("/opt/runcco-ser.sh",),
               start_timeout=30.0, restart=Restart())  # default settings: stable 10s


def make(world: dict[str, Observed] | None = None):
    clock = FakeClock()
    loop = Loop(clock)
    table = FakeTable(world or {"comunicador": Observed(None)})
    launcher = FakeLauncher()
    sink = Recorder()
    sup = Supervisor(Config("test.yaml", programs=(PROG,)), loop=loop, table=table,
                     launcher=launcher, watches=FakeWatches(), sinks=[sink], pidfd=False)
    return sup, clock, table, launcher, sink


def running_after_first_look() -> tuple:
    parts = make({"comunicador": Observed(A)})
    sup = parts[0]
    sup.settle()
    assert sup.group.states["comunicador"].phase == Phase.RUNNING
    return parts


def test_first_look_adopts_what_runs_and_launches_nothing():
    _sup, _, _table, launcher, sink = running_after_first_look()
    assert launcher.started == [] and sink.kinds() == ["found"]


def test_a_death_leaves_the_table_before_the_look():
    sup, clock, table, _, _ = running_after_first_look()
    table.calls.clear()
    clock.jump(60)
    table.world = {"comunicador": Observed(None)}
    sup.died(A, signal=9)
    sup.settle()
    assert table.calls[:2] == ["forget 100", "scan"]


def test_the_look_after_an_exit_comes_before_the_restart_decision():
    sup, clock, table, launcher, sink = running_after_first_look()
    clock.jump(60)
    table.world = {"comunicador": Observed(B)}  # someone already started another one
    sup.died(A, signal=9)
    sup.settle()
    state = sup.group.states["comunicador"]
    assert launcher.started == []  # adopted, not doubled
    assert state.phase == Phase.RUNNING and state.instance == B
    exited = next(e for e in sink.events if e.kind == "exited")
    assert exited.field("exit_signal") == "9" and "SIGKILL" in exited.message


def test_a_stale_cache_cannot_hand_back_the_dead_instance():
    sup, clock, table, launcher, _ = running_after_first_look()
    clock.jump(60)
    table.world = {"comunicador": Observed(A)}  # a lingering zombie the table still reports
    sup.died(A, status=1)
    sup.settle()
    state = sup.group.states["comunicador"]
    assert launcher.started == ["comunicador"]
    assert state.phase == Phase.STARTING and state.instance is None
    sup.settle()  # the next looks still report it: never adopted
    assert sup.group.states["comunicador"].instance is None


def test_a_repeated_verdict_in_a_steady_phase_changes_nothing():
    sup, clock, _table, _launcher, sink = running_after_first_look()
    before = sup.group.states["comunicador"]
    for _ in range(5):
        clock.jump(PROG.start_timeout)
        sup.look()
        sup.settle()
    assert sup.group.states["comunicador"] == before and sink.kinds() == ["found"]


def test_a_start_script_exit_is_judged_after_one_last_look():
    sup, clock, table, launcher, sink = make()
    sup.settle()
    assert launcher.started == ["comunicador"]
    child = next(iter(launcher.children.values()))
    child.popen.returncode = 0  # type: ignore[attr-defined]
    table.world = {"comunicador": Observed(A)}  # the daemon appeared as the script ended
    clock.jump(0.005)
    sup.settle()
    state = sup.group.states["comunicador"]
    assert state.phase == Phase.RUNNING and state.instance == A
    assert "started" in sink.kinds()


def test_next_wake_up_is_the_fast_start_poll_while_a_start_is_pending():
    sup, clock, _table, _launcher, _ = make()
    sup.settle()
    deadline = sup.loop.next_deadline()
    assert deadline is not None and deadline - clock() <= START_POLL_FAST + 1e-9


def test_next_wake_up_is_the_backstop_interval_when_all_run():
    sup, clock, *_ = running_after_first_look()
    deadline = sup.loop.next_deadline()
    assert deadline is not None and abs(deadline - clock() - sup.config.interval) < 1e-9


def test_check_mode_is_settled_once_every_program_runs():
    sup, clock, table, launcher, _ = make()
    sup.settle()
    assert not sup.settled()
    table.world = {"comunicador": Observed(A)}
    next(iter(launcher.children.values())).popen.returncode = 0  # type: ignore[attr-defined]
    clock.jump(0.02)
    sup.settle()
    assert sup.settled()


def test_loop_runs_posted_work_from_another_thread_on_its_own_thread():
    import threading

    clock = FakeClock()
    loop = Loop(clock)
    ran: list[str] = []
    worker = threading.Thread(target=lambda: loop.post(lambda: ran.append(
        threading.current_thread().name)))
    worker.start()
    worker.join()
    loop.turn(max_wait=5.0)  # the eventfd wakes the wait at once
    assert ran == [threading.current_thread().name]
    loop.close()


def test_loop_timers_fire_in_order_and_a_cancelled_one_never_does():
    clock = FakeClock()
    loop = Loop(clock)
    fired: list[str] = []
    loop.at(clock() + 2, lambda: fired.append("b"))
    loop.at(clock() + 1, lambda: fired.append("a"))
    loop.at(clock() + 1.5, lambda: fired.append("never")).cancel()
    clock.jump(3)
    loop.turn(max_wait=0)
    assert fired == ["a", "b"]
    loop.close()


def test_loop_sweeps_cancelled_timers_out_of_its_heap():
    """A timer re-armed per report must not leave its cancelled predecessors piling up in the
    heap until their moment (found by bench/alerts.py: +8 MiB over 10,000 reports)."""
    clock = FakeClock()
    loop = Loop(clock)
    fired: list[int] = []
    timer = None
    for i in range(100_000):
        if timer is not None:
            timer.cancel()
        timer = loop.at(clock() + 60, lambda i=i: fired.append(i))
    assert len(loop._timers) < 3000
    clock.jump(61)
    loop.turn(max_wait=0)
    assert fired == [99_999]
    loop.close()


def test_an_exec_reported_in_a_turn_with_a_full_scan_is_still_read():
    sup, _, table, _, _ = running_after_first_look()
    table.calls.clear()
    sup._execs = {4321}  # the connector said pid 4321 exec'd ...
    sup.look()  # ... in a turn that also scans everything (which re-reads only new pids)
    sup.settle()
    assert table.calls[:2] == ["refresh [4321]", "scan"]


def test_a_start_command_seen_as_the_program_dies_with_its_exit():
    # `start: [/usr/sbin/nginx, ...]`: the command launched is itself a match until it has
    # daemonized; when it exits, that instance died, it is not "started"
    sup, clock, table, launcher, sink = make()
    sup.settle()
    child = next(iter(launcher.children.values()))
    itself = Instance(child.pid, 3000.0)
    table.world = {"comunicador": Observed(itself)}
    clock.jump(0.005)
    sup.look()
    sup.settle()
    assert sup.group.states["comunicador"].instance == itself
    child.popen.returncode = 1  # type: ignore[attr-defined]  # e.g. bind() failed
    table.world = {"comunicador": Observed(None)}
    clock.jump(0.005)
    sup.settle()
    assert f"forget {child.pid}" in table.calls
    state = sup.group.states["comunicador"]
    assert state.phase == Phase.BACKOFF and "started" not in sink.kinds()
    assert "status 1" in next(e for e in sink.events if e.kind == "start_failed").message


class FakeConnector:
    """Stands in for ProcEvents: a socketpair the test makes readable, and the batches it says."""

    def __init__(self) -> None:
        import socket

        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.batches: list[Batch] = []
        self.closed = False

    def fileno(self) -> int:
        return self.ours.fileno()

    def say(self, batch: Batch) -> None:
        self.batches.append(batch)
        self.theirs.send(b"x")

    def read(self) -> Batch:
        out = Batch()
        with contextlib.suppress(BlockingIOError):
            self.ours.recv(4096)
        for batch in self.batches:
            out.execs |= batch.execs
            out.overflow = out.overflow or batch.overflow
        self.batches.clear()
        return out


def with_connector() -> tuple:
    sup, clock, table, _, _ = running_after_first_look()
    connector = FakeConnector()
    sup.proc_events = connector  # type: ignore[assignment]
    sup.loop.watch(connector.fileno(), sup._on_proc_events)
    table.calls.clear()
    return sup, clock, table, connector


def test_a_burst_of_execs_is_read_once_per_pause_not_once_per_exec():
    sup, clock, table, connector = with_connector()
    connector.say(Batch(execs={300}))
    sup.loop.turn(0)
    assert table.calls == ["refresh [300]"]
    assert not sup.loop.watching(connector.fileno())  # paused: more execs wait in the socket
    connector.say(Batch(execs={301}))
    connector.say(Batch(execs={302}))
    sup.loop.turn(0)
    assert table.calls == ["refresh [300]"]  # nothing read during the pause
    clock.jump(COALESCE)
    sup.loop.turn(0)
    assert table.calls == ["refresh [300]", "refresh [301, 302]"]  # both in one turn
    clock.jump(COALESCE)
    sup.loop.turn(0)  # nothing more came: listening again
    assert sup.loop.watching(connector.fileno())


def test_lost_events_mean_a_full_look_at_everything():
    sup, _, table, connector = with_connector()
    connector.say(Batch(overflow=True))
    sup.loop.turn(0)
    assert table.calls[:2] == ["configure", "scan"]
