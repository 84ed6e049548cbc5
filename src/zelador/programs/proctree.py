"""Read-only looks at the process tree: a process's family, a script's session, a scope's cgroup."""

from __future__ import annotations

import os

import psutil

from zelador.programs.states import Instance


def family_pids(instance: Instance) -> set[int]:
    try:
        process = psutil.Process(instance.pid)
        if process.create_time() != instance.create_time:
            return set()
        return {instance.pid} | {p.pid for p in process.children(recursive=True)}
    except psutil.Error:
        return set()


def descendant_pids(pid: int) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


def session_members(sid: int) -> set[int]:
    """Processes whose session or process group is `sid` (the script's own)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.getsid(pid) == sid or os.getpgid(pid) == sid:
                found.add(pid)
        except OSError:
            continue
    return found


def cgroup_pids(unit: str) -> set[int]:
    """The pids in a transient scope's cgroup (cgroup v2 under system.slice)."""
    path = f"/sys/fs/cgroup/system.slice/{unit}/cgroup.procs"
    try:
        with open(path, encoding="ascii") as stream:
            return {int(line) for line in stream if line.strip().isdigit()}
    except OSError:
        return set()
