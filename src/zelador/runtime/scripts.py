"""The start and stop scripts the supervisor runs: spawn them through the launcher, hear each
one end (its pidfd, or a poll where there is no pidfd), kill a start and what it started, and
SIGKILL a process that outlived its stop signal. Loop-thread bookkeeping only; the decisions
stay with the engine."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterable, Mapping

from zelador.config.model import Program
from zelador.events import Event
from zelador.programs.launcher import Child, Launcher
from zelador.programs.proctable import alive
from zelador.programs.session import Session
from zelador.programs.states import Instance, StopInstance
from zelador.runtime.loop import Loop


class Scripts:
    def __init__(self, loop: Loop, launcher: Launcher, emit: Callable[[Event], None],
                 pidfd: bool) -> None:
        self.loop = loop
        self.launcher = launcher
        self.emit = emit
        self.pidfd = pidfd
        self.starting: dict[str, Child] = {}  # program -> its running start script
        self.last_start: dict[str, Child] = {}  # program -> its latest start script, even ended
        self._ended: list[Child] = []  # scripts that exited since the last take_ended()

    def start(self, program: Program, session: Session | None = None,
              session_env: Mapping[str, str] | None = None) -> None:
        """Spawn the program's start script (LaunchError if it cannot be run); in `session`,
        with its environment, for a `user: session` program."""
        child = self.launcher.start(program, session, session_env)
        self.starting[program.name] = child
        self.last_start[program.name] = child
        self._watch(child)

    def stop(self, program: Program, action: StopInstance, now: float) -> None:
        """Carry out a StopInstance: signal (or stop command), and SIGKILL later if asked."""
        if action.kill_after is not None:
            self.loop.at(now + action.kill_after,
                         functools.partial(self._kill_if_alive, action.program, action.instance))
        child = self.launcher.stop(program, action.instance, action.force, action.duplicate)
        if child is not None:
            self._watch(child)

    def kill(self, name: str, spare: Instance | None) -> None:
        """Kill the program's start (running, or the last one that ended) and what it started."""
        child = self.starting.get(name) or self.last_start.get(name)
        if child is not None:
            self.launcher.kill_script(child, spare)

    def take_ended(self) -> list[Child]:
        if not self.pidfd:
            self._ended += [c for c in self.launcher.children.values()
                            if c.popen.poll() is not None and c not in self._ended]
        ended, self._ended = self._ended, []
        return ended

    def forget(self, names: Iterable[str]) -> None:
        """Programs no longer configured: kill their starts in flight, forget them."""
        for name in names:
            child = self.starting.pop(name, None)
            if child is not None:
                self.launcher.kill_script(child, None)
            self.last_start.pop(name, None)

    def _watch(self, child: Child) -> None:
        if child.fd >= 0:
            self.loop.watch(child.fd, functools.partial(self._exited, child))

    def _exited(self, child: Child) -> None:
        if child.popen.poll() is not None:
            if child.fd >= 0:
                self.loop.unwatch(child.fd)
            self._ended.append(child)

    def _kill_if_alive(self, name: str, instance: Instance) -> None:
        if alive(instance) and self.launcher.signal(instance, signal.SIGKILL):
            self.emit(Event("stop_timeout", f"{name}: pid {instance.pid} was still there after "
                            "its stop signal; sent SIGKILL", name, priority=4,
                            fields=(("pid", str(instance.pid)),)))
