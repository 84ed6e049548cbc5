"""The supervision wiring: process sources -> the pure program engine -> actions and events.

Sources (pidfd exits, reaped children, script exits, scans, commands) only *note* what they saw.
Once per loop turn, `settle()` handles it all in one fixed order, the order the promise "never
two instances, never a dead one adopted" needs:

1. deaths first: every process seen to die leaves every cache (the table marks it dead);
2. then a look at the process table (if anything died, a start is pending, or the backstop is
   due), so a replacement that already runs is adopted, not doubled;
3. then the engine hears, in order: the exits (each with what the look found in its place), the
   look's verdicts, the start scripts that ended, and the deadlines that came due;
4. then pidfds follow the engine's instances, and the next wake-up is set.

Only the loop thread runs any of this. Everything the engine decides comes back as actions:
`Launch`, `KillScript`, `StopInstance` are carried out through the launcher; events go to sinks.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Callable, Protocol

from zelador.config.model import Config, Program
from zelador.errors import LaunchError
from zelador.events import Event, Sink
from zelador.programs.family import leftovers
from zelador.programs.group import Group
from zelador.programs.launcher import Child, Launcher
from zelador.programs.policy import next_scan
from zelador.programs.procevents import ProcEvents
from zelador.programs.proctable import alive
from zelador.programs.reaper import Reaped, reap_orphans
from zelador.programs.session import Session, environment_of
from zelador.programs.session import current as current_session
from zelador.programs.states import (
    Action,
    Command,
    EarlyExit,
    Exited,
    HealthPassed,
    Input,
    Instance,
    KillScript,
    Launch,
    LaunchFailed,
    Observed,
    Phase,
    Reloaded,
    ScriptExited,
    SessionChanged,
    StopInstance,
    Tick,
)
from zelador.runtime.desktop import DesktopWatch
from zelador.runtime.loop import Loop, Timer
from zelador.runtime.scripts import Scripts
from zelador.runtime.trees import Trees

NO_PIDFD_POLL = 0.1  # without pidfd, how often to poll our scripts for exit
DESKTOP_SETTLE = 0.5  # a session that has no DISPLAY yet is looked at again this soon
CONNECTOR_BACKSTOP = 60.0  # with exec events, the full scan only guards against lost ones
COALESCE = 0.02  # after exec events, the connector is read again this much later (not at once)


def event_kinds(config: Config) -> frozenset[str]:
    """The connector events this config needs (the kernel drops the rest before we wake): exec,
    for new processes; fork and exit for programs that are their whole tree (`family: stop`, the
    default): what a start or an instance forks is its tree, a member's death is told."""
    if any(p.family == "stop" for p in config.programs):
        return frozenset({"exec", "fork", "exit"})
    return frozenset({"exec"})


class Table(Protocol):
    """The process table (programs/proctable.py; a fake in unit tests)."""

    def scan(self, watched: Collection[int] = (), sessions: Collection[int] = ()
             ) -> dict[str, Observed]: ...

    def configure(self, programs: Iterable[Program]) -> None: ...

    def forget(self, instance: Instance) -> None: ...

    def refresh(self, pids: Iterable[int]) -> dict[str, Observed]: ...

    def family(self, instance: Instance) -> frozenset[Instance]: ...

    def live(self) -> set[Instance]: ...

    def set_starts(self, starts: dict[str, int]) -> None: ...

    def forked(self, forks: dict[int, int]) -> None: ...

    def member(self, pid: int) -> tuple[Instance, Instance, str] | None: ...


    def remember(self, instance: Instance, members: frozenset[Instance]) -> None: ...

    def parent(self, instance: Instance) -> tuple[Instance, str, bool] | None: ...


class Watcher(Protocol):
    """pidfds on the engine's instances (programs/pidfd.py; a fake in unit tests)."""

    by_fd: dict[int, Instance]
    unwatchable: set[Instance]

    def sync(self, wanted: Iterable[Instance],
             before_close: Callable[[int], None] = ...) -> list[int]: ...

    def close_all(self) -> None: ...


class Supervisor:
    def __init__(self, config: Config, *, loop: Loop, table: Table, launcher: Launcher,
                 watches: Watcher, sinks: Sequence[Sink], pidfd: bool = True,
                 subreaper: bool = False, proc_events: ProcEvents | None = None) -> None:
        self.config = config
        self.scan_seconds = 0.0  # how long the last full look at the process table took
        self.loop = loop
        self.table = table
        self.launcher = launcher
        self.watches = watches
        self.sinks = list(sinks)
        self.pidfd = pidfd
        self.subreaper = subreaper  # orphans come to us: reap them and learn how they died
        self._early: list[Reaped] = []  # reaped processes no program knew as its instance
        self.proc_events = proc_events  # exec events: a new process is read when it execs ...
        self._execs: set[int] = set()
        if proc_events is not None:
            loop.watch(proc_events.fileno(), self._on_proc_events)
        self.group = Group(config)
        self.scripts = Scripts(loop, launcher, self.emit, pidfd)
        self.trees = Trees(loop, launcher, self.scripts, table, self.emit, self._instances)
        self._deaths: dict[Instance, tuple[int | None, int | None]] = {}  # -> (status, signal)
        self.desktop: Session | None = None  # for `user: session` programs ...
        self.desktop_env: dict[str, str] = {}  # ... and what they need of it (DISPLAY ...)
        self._desktop_watch: DesktopWatch | None = None
        self._desktop_dirty = False
        self._watch_desktop(config)
        self._scan_wanted = True
        self._last_scan = -math.inf
        self._wake: Timer | None = None
        loop.after_turn(self.settle)

    @property
    def backstop(self) -> float:
        """Seconds between full scans: `interval`, or, with exec events (so the scan only guards
        against lost ones), at least CONNECTOR_BACKSTOP."""
        if self.proc_events is None:
            return self.config.interval
        return max(self.config.interval, CONNECTOR_BACKSTOP)

    # --- sources: note, then let settle() decide ----------------------------------------------

    def died(self, instance: Instance, status: int | None = None, signal: int | None = None) -> None:
        """A process died (pidfd readable, or reaped with its status)."""
        known = self._deaths.get(instance, (None, None))
        self._deaths[instance] = (status if status is not None else known[0],
                                  signal if signal is not None else known[1])

    def look(self) -> None:
        """Ask for a scan at the end of this turn."""
        self._scan_wanted = True

    def command(self, name: str, verb: str, why: str = "") -> None:
        """start/stop/restart from the CLI (or a check's action). Look first: a copy started by
        hand since the last look is adopted, never doubled."""
        self._scan_wanted = True
        self.settle()
        self._apply(name, Command(verb, why), self.loop.clock())
        self._sync_watches()
        self._arm(self.loop.clock())

    def health_passed(self, name: str) -> None:
        """Its health check passed: with a health check, that is what makes a run "started"."""
        if name in self.group.states:
            self._apply(name, HealthPassed(), self.loop.clock())
            self._arm(self.loop.clock())

    # --- the ordered pass ---------------------------------------------------------------------

    def settle(self) -> None:
        now = self.loop.clock()
        if self.subreaper:
            self._collect_orphans()
        if self._desktop_dirty:
            self._refresh_desktop(now)
        ended = self.scripts.take_ended()
        for child in ended:  # `start: [/usr/sbin/nginx, ...]`: the start command may itself have
            self._start_was_instance(child)  # been seen as the program; its exit is a death
        deaths, self._deaths = self._deaths, {}
        if deaths and self.proc_events is not None and not self.proc_events.closed:
            self._take_events()  # forks not yet read (we may be in a pause) join the families
        for told in self.trees.member_deaths(self.group.states):
            self.emit(told)
        self._scan_wanted = self._scan_wanted or self.trees.shrunk
        families = {instance: self.table.family(instance) for instance in deaths}
        scoped = {instance: self.trees.scope_left(instance) for instance in deaths}
        parents = {instance: self.table.parent(instance) for instance in deaths}
        for instance in deaths:
            self.table.forget(instance)
        self.table.set_starts({name: child.pid for name, child in self.scripts.starting.items()
                               if (s := self.group.states.get(name)) is not None
                               and s.phase == Phase.STARTING and s.script_running})
        verdicts: dict[str, Observed] = {}
        due = next_scan(self.group.states.values(), self._last_scan, self.backstop)
        execs, self._execs = self._execs, set()
        if execs:  # read what exec'd first: a full scan re-reads only pids it has not seen
            verdicts = self.table.refresh(execs)
        if deaths or ended or self._scan_wanted or now >= due:
            self._scan_wanted = False
            self._last_scan = now
            began = time.perf_counter()
            verdicts = self.table.scan({i.pid for i in self.watches.by_fd.values()},
                                       self._starting_sessions())
            self.scan_seconds = time.perf_counter() - began  # for /metrics
        for instance, (status, signum) in deaths.items():
            for name in self._owners(instance):
                verdict = verdicts.get(name)
                successor = verdict.instance if verdict is not None else None
                if successor in families[instance]:  # an orphaned worker is no replacement
                    successor = None
                spare = {successor, *self.table.family(successor)} if successor else set()
                parent = parents[instance]
                tree = families[instance] | self.trees.outside(scoped[instance], parent)
                left = leftovers(tree, [i for i in tree if alive(i)], spare)
                respawner = parent[0] if parent is not None and parent[2] else None  # loose:
                # one we may stop if it does not start the next one (never a user's shell)
                self._apply(name, Exited(instance, status, signum, successor, left, respawner),
                            now)
        for name, verdict in verdicts.items():
            if name in self.group.states:
                self._apply(name, verdict, now)
        early, self._early = self._early, []
        for reaped in early:
            self._early_exit(reaped, now)
        for child in ended:
            self._script_ended(child, now)
        for name, state in list(self.group.states.items()):
            if state.deadline is not None and state.deadline <= now:
                self._apply(name, Tick(), now)
                if self.group.states[name].phase == Phase.UNKNOWN:  # session_grace over: look
                    self._scan_wanted = True
        self._sync_watches()
        self._arm(now)

    def settled(self) -> bool:
        """Check mode: done when every program runs or has failed a start."""
        return all(s.phase in (Phase.RUNNING, Phase.FATAL, Phase.WAITING) or s.failures > 0
                   for s in self.group.states.values())

    # --- helpers ------------------------------------------------------------------------------

    def _start_was_instance(self, child: Child) -> None:
        code = child.popen.returncode
        for state in self.group.states.values():
            if state.instance is not None and state.instance.pid == child.pid:
                self.died(state.instance, code if code is not None and code >= 0 else None,
                          -code if code is not None and code < 0 else None)

    def _starting_sessions(self) -> set[int]:
        """Without exec events: the sessions of the starts still waiting for their program."""
        if self.proc_events is not None:
            return set()
        return {child.pid for name, child in self.scripts.last_start.items()
                if (s := self.group.states.get(name)) is not None
                and s.phase == Phase.STARTING and s.instance is None}

    def _watch_desktop(self, config: Config) -> None:
        if self._desktop_watch is None and any(p.user == "session" for p in config.programs):
            self._desktop_watch = DesktopWatch(self.loop, self._desktop_changed)
            self._desktop_dirty = True

    def _desktop_changed(self) -> None:
        self._desktop_dirty = True

    def _refresh_desktop(self, now: float) -> None:
        """Tell each `user: session` program the session to run in (or why there is none)."""
        self._desktop_dirty = False
        found = current_session()
        self.desktop, self.desktop_env = None, {}
        if isinstance(found, Session):
            env = environment_of(found)
            if found.type == "x11" and not env.get("DISPLAY"):
                # just opened: its processes have not exec'd with their environment yet
                found = f"session {found.id} ({found.user}) has no DISPLAY yet"
                self.loop.at(now + DESKTOP_SETTLE, self._desktop_changed)
            else:
                self.desktop, self.desktop_env = found, env
        change = SessionChanged(self.desktop.id if self.desktop else "",
                                found if isinstance(found, str) else "")
        for program in self.config.programs:
            if program.user == "session":
                self._apply(program.name, change, now)
        self._scan_wanted = True

    def _on_proc_events(self) -> None:
        """The connector's socket is readable: take what is there, then stop listening for
        COALESCE seconds, so a burst of execs elsewhere costs one wake-up per pause, not one
        each (a watched program's exec is still seen within COALESCE)."""
        assert self.proc_events is not None
        self._take_events()
        self.loop.unwatch(self.proc_events.fileno())
        self.loop.at(self.loop.clock() + COALESCE, self._after_pause)

    def _after_pause(self) -> None:
        if self.proc_events is None or self.proc_events.closed:
            return
        if self._take_events():  # still busy: the next look comes after another pause
            self.loop.at(self.loop.clock() + COALESCE, self._after_pause)
        else:
            self.loop.watch(self.proc_events.fileno(), self._on_proc_events)

    def _take_events(self) -> bool:
        """Note what the connector said; True if it said anything."""
        assert self.proc_events is not None
        batch = self.proc_events.read()
        if batch.overflow:  # events were lost: read every process again, not just new pids
            self.table.configure(self.config.programs)
            self._scan_wanted = True
        self._execs |= batch.execs
        self.table.forked(batch.forks)  # a worker forked below an instance is its tree now
        self.trees.start_forks.forked(batch.forks)  # ... and what a start forks, its start's
        for pid, status in batch.statuses.items():  # (wait status: signal in the low 7 bits)
            self.trees.member_died(pid, status >> 8 if not status & 0x7F else None,
                                   status & 0x7F or None)
        return batch.overflow or bool(batch.execs or batch.forks or batch.exits)

    def _collect_orphans(self) -> None:
        with self.launcher.helper_lock:  # a helper being spawned is registered first
            reaped_now = reap_orphans(self.launcher.children, self.launcher.helpers)
        for reaped in reaped_now:
            if self._owners(reaped.instance):
                self.died(reaped.instance, reaped.status, reaped.signal)
            elif self.trees.member_died(reaped.instance.pid, reaped.status, reaped.signal):
                pass  # a worker orphaned below a live instance: told by member_deaths
            elif reaped.abnormal:
                self._early.append(reaped)

    def _early_exit(self, reaped: Reaped, now: float) -> None:
        """A process died before any look saw it: if it is a program we are starting (by its
        name, all a zombie still tells), that start failed, and we say so now."""
        how = Exited(reaped.instance, reaped.status, reaped.signal).how
        for program in self.config.programs:
            state = self.group.states.get(program.name)
            start = self.scripts.last_start.get(program.name)
            if (state is not None and state.phase == Phase.STARTING and state.instance is None
                    and program.match.name == reaped.name and not program.match.fields() - {"name"}
                    # born after this start began: a process of an earlier life (killed by
                    # hand, reaped only now) is not this start's failure
                    and start is not None and reaped.instance.create_time >= start.created):
                self._apply(program.name, EarlyExit(reaped.instance.pid, how), now)

    def _instances(self) -> set[Instance]:
        return {s.instance for s in self.group.states.values() if s.instance is not None}

    def _owners(self, instance: Instance) -> list[str]:
        return [s.name for s in self.group.states.values()
                if s.instance == instance or instance in s.duplicates or instance in s.leftovers]

    def _arm(self, now: float) -> None:
        wake = next_scan(self.group.states.values(), self._last_scan, self.backstop)
        if self._scan_wanted:  # asked for after this turn's look: the next turn looks
            wake = now
        deadline = self.group.deadline()
        if deadline is not None:
            wake = min(wake, deadline)
        if not self.pidfd and self.launcher.children:
            wake = min(wake, now + NO_PIDFD_POLL)
        if self._wake is not None:
            if self._wake.when == wake and not self._wake.cancelled:
                return
            self._wake.cancel()
        self._wake = self.loop.at(wake, lambda: None)  # the turn's settle() does the work

    def _apply(self, name: str, event: Input, now: float) -> None:
        for action in self.group.apply(name, event, now):
            self._do(action, now)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)

    def _do(self, action: Action, now: float) -> None:
        if isinstance(action, Event):
            self.emit(action)
        elif isinstance(action, Launch):
            self._launch(action.program, now)
        elif isinstance(action, KillScript):
            self.trees.kill_start(action.program, action.spare)
        elif isinstance(action, StopInstance):
            try:
                self.trees.stop(self.config.program(action.program), action, now)
            except LaunchError as exc:
                self.emit(Event("script_failed", f"{action.program}: {exc}", action.program,
                                priority=3))

    def _launch(self, name: str, now: float) -> None:
        try:
            program = self.config.program(name)
            if program.user == "session":
                self.scripts.start(program, self.desktop, self.desktop_env)
            else:
                self.scripts.start(program)
            self.trees.start_forks.watch(self.scripts.starting[name].pid)  # before it forks
        except LaunchError as exc:
            self._apply(name, LaunchFailed(str(exc), host=exc.host), now)

    def _script_ended(self, child: Child, now: float) -> None:
        code = self.launcher.reap(child)
        if code is None:
            return
        if child.kind == "stop":
            if code != 0:
                self.emit(Event("script_failed", f"{child.program}: stop command exited with "
                                f"status {code}", child.program, priority=4))
            return
        if self.scripts.starting.get(child.program) is child:
            del self.scripts.starting[child.program]
            if child.program in self.group.states:
                output = self.launcher.output_tail(child.program) if code != 0 else ""
                self._apply(child.program, ScriptExited(code, output), now)

    def _sync_watches(self) -> None:
        before = set(self.watches.unwatchable)
        wanted = self.group.instances()
        self.trees.note(wanted)
        opened = self.watches.sync(wanted, self.loop.unwatch)
        for fd in opened:
            self.loop.watch(fd, functools.partial(self._pidfd_readable, fd))
        if self.pidfd and self.watches.unwatchable - before:
            self._scan_wanted = True  # it died before we could watch it: let the scan say so
            for instance in self.watches.unwatchable - before:
                if not alive(instance):  # (a leftover TERMed a moment ago): a death, now
                    self.died(instance)
            self.loop.at(self.loop.clock(), lambda: None)

    def _pidfd_readable(self, fd: int) -> None:
        instance = self.watches.by_fd.get(fd)
        if instance is not None:
            self.loop.unwatch(fd)  # it stays readable: stop listening until sync closes it
            self.died(instance)

    # --- reload -------------------------------------------------------------------------------

    def reconfigure(self, config: Config) -> tuple[list[str], list[str]]:
        """Take a new config; kill the start scripts of programs no longer watched."""
        added, removed = self.group.reconfigure(config)
        self.config = config
        self.table.configure(config.programs)
        if self.proc_events is not None:
            self.proc_events.ask(event_kinds(config))
        self._watch_desktop(config)
        self._desktop_dirty = self._desktop_watch is not None
        self.scripts.forget(set(self.scripts.last_start) - set(self.group.states))
        self._scan_wanted = True
        now = self.loop.clock()
        for name in list(self.group.states):
            self._apply(name, Reloaded(), now)
        return added, removed
