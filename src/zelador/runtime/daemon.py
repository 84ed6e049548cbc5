"""The loop: one wait on every fd and the nearest deadline; events in, actions out.

Each turn: wait (pidfds of watched processes and of our scripts, the control socket and its
clients, the signal pipe) until the nearest deadline; turn what woke us into events; scan the
process table when something may have changed or the backstop interval is due; feed the engine;
carry its actions out; ping the watchdog. Nothing here waits on a script or the network.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from typing import Callable

from zelador.config.model import Config
from zelador.config.reader import load_config
from zelador.errors import LaunchError, ZeladorError
from zelador.programs.group import Group
from zelador.programs.launcher import Child, Launcher
from zelador.programs.pidfd import SUPPORTED as PIDFD
from zelador.programs.pidfd import Watches
from zelador.programs.proctable import ProcessTable
from zelador.programs.states import (
    Action,
    Command,
    Emit,
    Exited,
    KillScript,
    Launch,
    LaunchFailed,
    Observed,
    Phase,
    ScriptExited,
    StopInstance,
    Tick,
)
from zelador.programs.view import program_status
from zelador.runtime.control import ControlServer
from zelador.systemd.journal import Journal
from zelador.systemd.notify import Notifier, watchdog_interval

_STEADY = (Phase.RUNNING, Phase.STOPPED, Phase.FATAL, Phase.BACKOFF)  # a repeated verdict changes nothing
START_POLL_FAST = 0.02  # scan this often while a started program has not shown up yet ...
START_POLL_SLOW = 0.25  # ... and this often once it is slower than FAST_FOR
FAST_FOR = 2.0
NO_PIDFD_POLL = 0.1  # without pidfd, how often to poll our scripts for exit


class Daemon:
    def __init__(self, config: Config, *, journal: Journal, launcher: Launcher,
                 notifier: Notifier | None = None, control: ControlServer | None = None,
                 clock: Callable[[], float] = time.monotonic, once: bool = False) -> None:
        self.config = config
        self.journal = journal
        self.launcher = launcher
        self.notifier = notifier or Notifier(lambda msg: journal.event("degraded", msg, priority=4))
        self.control = control  # a ControlServer, or None (check mode)
        self.clock = clock
        self.once = once
        self.group = Group(config)
        self.table = ProcessTable(config.programs)
        self.watches = Watches()
        self.starting: dict[str, Child] = {}  # program -> its running start script
        self.selector = selectors.DefaultSelector()
        self.started_at = time.time()
        self._signals: list[int] = []
        self._scan_due = 0.0
        self._scan_now = True
        self._watchdog = watchdog_interval()
        self._watchdog_due = 0.0
        self._stop = False
        self._last_seen: dict[str, Observed] = {}

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (or, in check mode, until every program settled)."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self.selector.register(wake_r, selectors.EVENT_READ, ("signal", None))
        old_fd = signal.set_wakeup_fd(wake_w.fileno())
        handled = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
        previous = {s: signal.signal(s, self._on_signal) for s in handled}
        if self.control is not None:
            self.selector.register(self.control.fileno(), selectors.EVENT_READ, ("listen", None))
        try:
            self._turn(ready=[])  # the first scan: adopt what runs, start what does not
            if not self.once:  # logged before READY=1, so it precedes systemd's "Started"
                self.journal.event("ready", f"watching {len(self.config.programs)} programs "
                                   f"({self.group.summary()}); config {self.config.path}",
                                   priority=5)
            self.notifier.ready(self.group.summary())
            while not self._stop:
                timeout = self._timeout()
                ready = self.selector.select(timeout)
                self._turn(ready)
                if self.once and self._settled():
                    break
        finally:
            signal.set_wakeup_fd(old_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            wake_r.close()
            wake_w.close()
            self.watches.close_all()
            self.selector.close()
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _timeout(self) -> float:
        now = self.clock()
        due = [self._scan_due]
        deadline = self.group.deadline()
        if deadline is not None:
            due.append(deadline)
        if self._watchdog:
            due.append(self._watchdog_due)
        if self.control is not None and self.control.clients:
            due.append(now + 0.5)
        if not PIDFD and self.launcher.children:
            due.append(now + NO_PIDFD_POLL)
        return max(0.0, min(due) - now)

    def _turn(self, ready: list[tuple[selectors.SelectorKey, int]]) -> None:
        for key, _ in ready:
            kind, item = key.data
            if kind == "signal":
                self._drain(key.fileobj)  # type: ignore[arg-type]
            elif kind == "instance":
                self._instance_exited(item)
            elif kind == "child":
                self._script_exited(item)
            elif kind == "listen":
                self._accept()
            elif kind == "client":
                self._serve(item)
        if not PIDFD:
            for child in list(self.launcher.children.values()):
                self._script_exited(child)
        self._handle_signals()
        if self._stop:
            return
        now = self.clock()
        if self._scan_now or now >= self._scan_due:
            self._scan(now)
        for name, state in list(self.group.states.items()):
            if state.deadline is not None and state.deadline <= now:
                self._apply(name, Tick(), now)
        self._sync_watches()
        if self.control is not None:
            for fd in self.control.expired(now):
                self._unregister_fd(fd)
        self.notifier.status(self.group.summary())
        if self._watchdog and now >= self._watchdog_due:
            self.notifier.watchdog()
            self._watchdog_due = now + self._watchdog

    def _scan(self, now: float) -> None:
        self._scan_now = False
        watched = {i.pid for i in self.watches.by_fd.values()}
        verdicts = self.table.scan(watched)
        for name, observed in verdicts.items():
            state = self.group.states.get(name)
            if state is None or (self._last_seen.get(name) == observed and state.phase in _STEADY):
                continue  # nothing new to tell the engine
            self._last_seen[name] = observed
            self._apply(name, observed, now)
        self._scan_due = now + self.config.interval
        for state in self.group.states.values():
            if state.phase == Phase.STARTING and state.instance is None:
                poll = START_POLL_FAST if now - state.since < FAST_FOR else START_POLL_SLOW
                self._scan_due = min(self._scan_due, now + poll)

    def _settled(self) -> bool:
        """Check mode: done when every program runs or has failed a start."""
        return all(s.phase in (Phase.RUNNING, Phase.FATAL) or s.failures > 0
                   for s in self.group.states.values())

    # --- events in --------------------------------------------------------------------------

    def _instance_exited(self, fd: int) -> None:
        instance = self.watches.by_fd.get(fd)
        if instance is None:
            return
        self._scan_now = True  # another match may be there already; look before restarting
        now = self.clock()
        for name in self.group.owner(instance):
            self._apply(name, Exited(instance), now)

    def _script_exited(self, child: Child) -> None:
        if child.popen.poll() is None:
            return
        self._unregister_child(child)
        code = self.launcher.reap(child)
        assert code is not None
        if child.kind == "stop":
            if code != 0:
                self.journal.event("script_failed", f"{child.program}: stop command exited with "
                                   f"status {code}", program=child.program, priority=4)
            return
        if self.starting.get(child.program) is child:
            del self.starting[child.program]
            self._scan_now = True
            if child.program in self.group.states:
                self._apply(child.program, ScriptExited(code), self.clock())

    def _drain(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while sock.recv(64):
                pass

    def _handle_signals(self) -> None:
        pending, self._signals = self._signals, []
        for signum in pending:
            if signum == signal.SIGHUP and not self.once:
                self.reload()
            elif signum in (signal.SIGTERM, signal.SIGINT):
                self.shutdown(signal.Signals(signum).name)

    def _accept(self) -> None:
        if self.control is None:
            return
        fd = self.control.accept(self.clock())
        if fd is not None:
            self.selector.register(fd, selectors.EVENT_READ, ("client", fd))

    def _serve(self, fd: int) -> None:
        got = self.control.receive(fd) if self.control is not None else None
        if got is None:
            return
        self._unregister_fd(fd)
        conn, request = got
        ControlServer.reply(conn, self.answer(request))

    def answer(self, request: dict[str, object]) -> dict[str, object]:
        """Reply to a control request (status, start, stop, restart)."""
        cmd = request.get("cmd")
        if cmd == "status":
            programs = [program_status(self.group.states[p.name], self.table)
                        for p in self.config.programs]
            return {"pid": os.getpid(), "config": self.config.path, "started": self.started_at,
                    "summary": self.group.summary(), "programs": programs}
        if cmd in ("start", "stop", "restart"):
            name = request.get("program")
            if name not in self.group.states:
                known = ", ".join(self.group.states)
                return {"error": f"no program {name!r} in {self.config.path} (known: {known})"}
            assert isinstance(name, str)
            self._apply(name, Command(str(cmd)), self.clock())
            self._sync_watches()
            return {"ok": True, "program": program_status(self.group.states[name], self.table)}
        return {"error": f"unknown request {request!r} (try: status, start, stop, restart)"}

    # --- actions out ------------------------------------------------------------------------

    def _apply(self, name: str, event: object, now: float) -> None:
        for action in self.group.apply(name, event, now):  # type: ignore[arg-type]
            self._do(action, now)

    def _do(self, action: Action, now: float) -> None:
        if isinstance(action, Emit):
            self.journal.event(action.kind, action.message, program=action.program,
                               pid=action.pid, restarts=action.restarts, priority=action.priority)
        elif isinstance(action, Launch):
            self._launch(action.program, now)
        elif isinstance(action, KillScript):
            child = self.starting.get(action.program)
            if child is not None:
                self.launcher.kill_group(child)
        elif isinstance(action, StopInstance):
            try:
                child = self.launcher.stop(self.config.program(action.program), action.instance,
                                           action.force)
            except LaunchError as exc:
                self.journal.event("script_failed", f"{action.program}: {exc}",
                                   program=action.program, priority=3)
                return
            if child is not None:
                self._register_child(child)

    def _launch(self, name: str, now: float) -> None:
        try:
            child = self.launcher.start(self.config.program(name))
        except LaunchError as exc:
            self._apply(name, LaunchFailed(str(exc)), now)
            return
        self.starting[name] = child
        self._register_child(child)
        self._scan_due = min(self._scan_due, now + START_POLL_FAST)

    # --- fds --------------------------------------------------------------------------------

    def _register_child(self, child: Child) -> None:
        if child.fd >= 0:
            self.selector.register(child.fd, selectors.EVENT_READ, ("child", child))

    def _unregister_child(self, child: Child) -> None:
        if child.fd >= 0:
            self._unregister_fd(child.fd)

    def _unregister_fd(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)

    def _sync_watches(self) -> None:
        before = set(self.watches.unwatchable)
        opened = self.watches.sync(self.group.instances(), before_close=self._unregister_fd)
        for fd in opened:
            self.selector.register(fd, selectors.EVENT_READ, ("instance", fd))
        if PIDFD and self.watches.unwatchable - before:
            self._scan_now = True  # it died before we could watch it: let the scan say so

    # --- reload and shutdown ----------------------------------------------------------------

    def reload(self) -> None:
        """Read the config again; if it is broken, say so and keep running the old one."""
        self.notifier.reloading()
        try:
            new = load_config(self.config.path, missing_ok=True)
        except ZeladorError as exc:
            self.journal.event("config_rejected", f"reload refused, the running config stays: "
                               f"{exc}", priority=3)
            self.notifier.ready(self.group.summary())
            return
        added, removed = self.group.reconfigure(new)
        self.config = new
        self.table.configure(new.programs)
        self._last_seen.clear()
        for name in [n for n in self.starting if n not in self.group.states]:
            del self.starting[name]
        self._scan_now = True
        change = []
        if added:
            change.append("added " + ", ".join(added))
        if removed:
            change.append("no longer watching " + ", ".join(removed) + " (left running)")
        self.journal.event("reloaded", f"config {new.path} reloaded"
                           f"{': ' + '; '.join(change) if change else ''}", priority=5)
        self.notifier.ready(self.group.summary())

    def shutdown(self, why: str) -> None:
        """Exit the loop; the watched programs are left running."""
        self._stop = True
        self.notifier.stopping()
        if not self.once:
            self.journal.event("shutdown", f"stopping on {why}; watched programs are left "
                               "running", priority=5)
