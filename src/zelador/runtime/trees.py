"""A program is its whole process tree: carrying out the engine's StopInstance on all of it.

The tree of an instance is everything below it (read now, while it lives), what the table
remembers of its family (workers reparented since), and under systemd everything in its scope's
cgroup. What each stop does with it:

- the program's own stop (`stop`, `restart`, a check's restart, `part_of`): the launcher that
  may start it again (its parent, when zelador started that parent) gets SIGTERM first, then the
  instance its stop signal or stop command; the rest of the tree is remembered, so it comes back
  as the Exited's leftovers once the instance is gone, and the engine stops it (SIGTERM, SIGKILL
  at the stop's deadline) before it says stopped or starts again;
- SIGKILL after `stop.timeout`: to every live member at once;
- a duplicate's stop: its stop signal, SIGTERM to the rest of its tree, SIGKILL to whatever of
  it is left after `stop.timeout`.

`family: keep` programs are stopped as one process (the engine sends no `tree`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
from collections.abc import Mapping
from typing import Callable, Protocol

from zelador.config.model import Program
from zelador.events import Event
from zelador.events import event as make_event
from zelador.programs.launcher import Launcher
from zelador.programs.proctable import alive
from zelador.programs.proctree import (
    StartForks,
    descendant_pids,
    parent_pid,
    scope_members,
    scope_of,
    tree_of,
)
from zelador.programs.states import Exited, Instance, Phase, ProgramState, StopInstance
from zelador.runtime.loop import Loop
from zelador.runtime.scripts import Scripts

MEMBER_DEATHS_KEPT = 1024  # family deaths noted between two loop turns, at most
FREEZE_ROUNDS = 8  # a tree still growing after this many looks is signalled as far as seen


class TreeTable(Protocol):
    def family(self, instance: Instance) -> frozenset[Instance]: ...

    def member(self, pid: int) -> tuple[Instance, Instance, str] | None: ...


    def forget(self, instance: Instance) -> None: ...

    def remember(self, instance: Instance, members: frozenset[Instance]) -> None: ...

    def parent(self, instance: Instance) -> tuple[Instance, str, bool] | None: ...


class Trees:
    def __init__(self, loop: Loop, launcher: Launcher, scripts: Scripts, table: TreeTable,
                 emit: Callable[[Event], None],
                 protected: Callable[[], set[Instance]] = set) -> None:
        self.protected = protected  # every program's instance: never stopped as a launcher
        self.scopes: dict[Instance, str] = {}  # watched process -> its zelador scope's cgroup
        self.start_forks = StartForks()
        self._member_deaths: list[tuple[Instance, Instance, str, int | None, int | None]] = []
        self.shrunk = False
        self.loop = loop
        self.launcher = launcher
        self.scripts = scripts
        self.table = table
        self.emit = emit

    def kill_start(self, name: str, spare: Instance | None) -> None:
        """A failed (or hung) start: SIGKILL the script, its session, its descendants, its scope
        (the launcher), and what it forked that went elsewhere since (fork events: a daemon
        that called setsid() after its script ended), sparing `spare`'s tree and every
        program's instance."""
        child = self.scripts.starting.get(name) or self.scripts.last_start.get(name)
        self.scripts.kill(name, spare)
        if child is None:
            return
        kept = self.protected()
        if spare is not None:
            kept |= {spare, *self.members(spare)}
        strays = {i for i in self.start_forks.tree(child.pid) if i not in kept and alive(i)}
        self.launcher.signal_all(strays, signal.SIGKILL)

    def member_died(self, pid: int, status: int | None, signum: int | None) -> bool:
        """A process ended (the connector said so, or we reaped it): if it was of a watched
        instance's family, note it for `member_deaths`; True if it was."""
        found = self.table.member(pid)
        if found is not None and len(self._member_deaths) < MEMBER_DEATHS_KEPT:
            self._member_deaths.append((*found, status, signum))
        return found is not None

    def member_deaths(self, states: Mapping[str, ProgramState]) -> list[Event]:
        """The family members seen to die since the last call leave their families (the tree
        size shrinks at the next look); an abnormal death of one (a signal, a non-zero exit)
        while its instance runs is a `family_member_exited` event."""
        deaths, self._member_deaths = self._member_deaths, []
        self.shrunk = bool(deaths)  # the caller looks again: the tree sizes change
        out = []
        for root, member, name, status, signum in deaths:
            self.table.forget(member)
            owner = next((s for s in states.values()
                          if s.instance == root and s.phase == Phase.RUNNING), None)
            if owner is None or member in owner.leftovers or not (signum or status):
                continue
            how = Exited(member, status, signum).how
            out.append(make_event(
                "family_member_exited", f"{owner.name}: pid {member.pid} ({name}) of its tree "
                f"{how}; the instance, pid {root.pid}, still runs", subject=owner.name,
                priority=4, pid=member.pid, name=name, exit_status=status, exit_signal=signum))
        return out

    def note(self, watched: set[Instance]) -> None:
        """Remember the zelador scope each watched process lives in (under systemd): when it
        dies, what is left in that scope is its tree, wherever it was reparented to."""
        self.scopes = {i: path for i, path in self.scopes.items() if i in watched}
        for instance in watched - self.scopes.keys():
            self.scopes[instance] = scope_of(instance.pid)

    def scope_left(self, instance: Instance) -> set[Instance]:
        """What is still alive in the dead `instance`'s scope (empty without systemd)."""
        path = self.scopes.pop(instance, "")
        return {i for i in scope_members(path) if i != instance} if path else set()

    @staticmethod
    def outside(scoped: set[Instance], parent: tuple[Instance, str, bool] | None
                ) -> set[Instance]:
        """Of a dead instance's scope, what was not its launcher's (the launcher, its other
        children: it may start the next instance in the same scope)."""
        if parent is None:
            return scoped
        return {i for i in scoped if i != parent[0] and parent_pid(i.pid) != parent[0].pid}

    def members(self, instance: Instance) -> set[Instance]:
        """The live rest of `instance`'s tree (not itself)."""
        found = tree_of(instance)
        found |= {i for i in self.table.family(instance) if i not in found and alive(i)}
        found.discard(instance)
        return found

    def frozen(self, instance: Instance) -> set[Instance]:
        """The rest of the tree, read with the tree held still (SIGSTOP, top down), so nothing
        forked while we look escapes; the caller signals, then thaws it with `thaw`."""
        if not self.launcher.signal(instance, signal.SIGSTOP):
            return self.members(instance)
        found: set[Instance] = set()
        for _ in range(FREEZE_ROUNDS):
            new = self.members(instance) - found
            if not new:
                break
            self.launcher.signal_all(new, signal.SIGSTOP)
            found |= new
        return found

    def thaw(self, instance: Instance, members: set[Instance]) -> None:
        self.launcher.signal_all({instance, *members}, signal.SIGCONT)

    def own_launcher(self, instance: Instance) -> Instance | None:
        """Its parent, when that is a process zelador started or that nobody holds (a vendor's
        respawn loop left by the start script): stopping the program stops that too, or it
        would start it again."""
        found = self.table.parent(instance)
        if found is None:
            return None
        parent, _, loose = found  # loose: nobody else holds it (zelador's own earlier life
        # started it, or a boot script's nohup): never a user's shell or another program
        if parent in self.protected():  # another program (or this one's launcher duplicate)
            return None
        return parent if loose or parent.pid in descendant_pids(os.getpid()) else None

    def stop(self, program: Program, action: StopInstance, now: float) -> None:
        """Carry out `action` (LaunchError from a stop command goes to the caller)."""
        if action.duplicate and action.signum is not None and action.instance in self.protected():
            return  # a duplicate's launcher that is some program's instance: not ours to stop
        hold = action.tree and not action.force
        members = self.frozen(action.instance) if hold else (
            self.members(action.instance) if action.tree else set())
        if action.tree and not action.force and not action.duplicate:
            respawner = self.own_launcher(action.instance)
            if respawner is not None:  # first, so it starts nothing while the rest goes
                self.launcher.signal(respawner, signal.SIGTERM)
                members.add(respawner)
        if members and not action.force:
            self.table.remember(action.instance, frozenset(members))
        own_timer = action.kill_after is not None and (action.tree or action.signum is not None)
        if action.signum is not None and not action.force:
            self.launcher.signal(action.instance, action.signum)
        else:
            self.scripts.stop(program, dataclasses.replace(action, kill_after=None)
                              if own_timer else action, now)
        if action.force:
            self.launcher.signal_all(members, signal.SIGKILL)
        elif action.duplicate and members:
            self.launcher.signal_all(members, signal.SIGTERM)
        if hold:  # the signals sent wait for it: now they are delivered, all together
            self.thaw(action.instance, members)
        if own_timer and action.kill_after is not None:
            self.loop.at(now + action.kill_after, functools.partial(
                self._kill_left, action.program, frozenset({action.instance, *members})))

    def _kill_left(self, name: str, tree: frozenset[Instance]) -> None:
        left = [i for i in tree if alive(i)]
        killed = self.launcher.signal_all(left, signal.SIGKILL)
        if killed:
            pids = ", ".join(str(p) for p in killed)
            self.emit(Event("stop_timeout", f"{name}: pid {pids} still there after the stop "
                            "signal; sent SIGKILL", name, priority=4,
                            fields=(("pid", str(killed[0])),)))
