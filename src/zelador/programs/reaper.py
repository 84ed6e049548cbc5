"""Reaping: zelador is the child subreaper of what it starts, so the daemons its scripts
`nohup` become its children when the scripts exit; it reaps them the moment they die and learns
how (exit status or signal), where PID 1 would leave them as zombies for a while.
Together with launcher.py, the only place that reaps."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from zelador.programs.launcher import Child
from zelador.programs.states import Instance


@dataclass(frozen=True)
class Reaped:
    """A process we reaped that was not one of our scripts: an orphan that came to us."""

    instance: Instance
    name: str  # read from the zombie before reaping it
    status: int | None  # exit status, or
    signal: int | None  # the signal that killed it

    @property
    def abnormal(self) -> bool:
        return self.signal is not None or self.status != 0


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphans of our descendants our children (prctl), so we reap them and learn how
    they died. They still outlive us: when we exit they go to PID 1 as before."""
    try:
        import ctypes  # (once, at start-up: not kept in every module's import)

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(children: Mapping[int, Child],
                 helpers: Mapping[int, subprocess.Popen[bytes]] | None = None) -> list[Reaped]:
    """Reap every child that has exited. Our scripts (`children`) and zelador's own helper
    processes are reaped through their Popen, which keeps their status; any other child (an
    orphaned daemon that came to us as subreaper) is identified from its zombie, reaped, and
    returned with how it died."""
    out: list[Reaped] = []
    seen: set[int] = set()
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return out
        if info is None or info.si_pid in seen:
            return out
        pid = info.si_pid
        seen.add(pid)
        child = children.get(pid)
        if child is not None:
            child.popen.poll()
            continue
        helper = helpers.get(pid) if helpers else None
        if helper is not None and helper.returncode is None:
            helper.poll()
            continue
        # (a helper already reaped whose pid now belongs to an orphan: reaped as one below)
        try:
            zombie = psutil.Process(pid)
            instance, name = Instance(pid, zombie.create_time()), zombie.name()
        except psutil.Error:
            instance, name = Instance(pid, 0.0), ""
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        out.append(Reaped(instance, name, None if killed else info.si_status,
                          info.si_status if killed else None))
