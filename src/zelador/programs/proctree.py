"""Read-only looks at the process tree: a process's family, a script's session, a scope's cgroup."""

from __future__ import annotations

import os

import psutil

from zelador.programs.procstat import Gone, read_stat
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


def cgroup_pids(unit: str, slice_: str = "") -> set[int]:
    """The pids in a transient scope's cgroup (cgroup v2): under system.slice, or under the
    slice it was created in (`user-1000.slice`, for a `user: session` program)."""
    parent = "system.slice"
    if slice_.startswith("user-"):
        parent = f"user.slice/{slice_}"
    elif slice_:
        parent = slice_
    return _procs_any(f"/{parent}/{unit}/cgroup.procs")


# Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup on a unified system (Debian 11 and
# later by default); /sys/fs/cgroup/unified on a hybrid one, where systemd's own v1 hierarchy
# (/sys/fs/cgroup/systemd) holds the same paths (a container on a hybrid host is one).
CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")


def _procs_any(relative: str) -> set[int]:
    """cgroup.procs of the cgroup at `relative`, read under the first root that has it."""
    for root in CGROUP_ROOTS:
        if os.path.exists(root + relative):
            return _procs(root + relative)
    return set()


def _procs(path: str) -> set[int]:
    try:
        with open(path, encoding="ascii") as stream:
            return {int(line) for line in stream if line.strip().isdigit()}
    except OSError:
        return set()


def scope_of(pid: int) -> str:
    """The cgroup (v2) path of `pid` when it is one of zelador's transient scopes, else ""."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="ascii", errors="replace") as stream:
            for line in stream:
                if line.startswith("0::"):
                    path = line[3:].strip()
                    leaf = path.rsplit("/", 1)[-1]
                    return path if leaf.startswith("zelador-") and leaf.endswith(".scope") else ""
    except OSError:
        return ""
    return ""


def parent_pid(pid: int) -> int:
    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return 0


def scope_members(path: str) -> set[Instance]:
    """The live processes in the cgroup at `path` (as `scope_of` gives it)."""
    found = set()
    for pid in _procs_any(f"{path}/cgroup.procs"):
        try:
            found.add(Instance(pid, psutil.Process(pid).create_time()))
        except psutil.Error:
            continue
    return found


def tree_of(instance: Instance) -> set[Instance]:
    """Every live process of `instance`'s tree but itself: its descendants, and under systemd
    everything in its scope's cgroup (what called setsid() and was reparented is still there)."""
    found: set[Instance] = set()
    try:
        process = psutil.Process(instance.pid)
        if process.create_time() != instance.create_time:
            return found
        children = process.children(recursive=True)
    except psutil.Error:
        return found
    for child in children:
        try:
            found.add(Instance(child.pid, child.create_time()))
        except psutil.Error:
            continue
    scope = scope_of(instance.pid)
    if scope:
        found |= scope_members(scope) - {instance}
    return found


def describe(pid: int, name: str) -> str:
    """A process's command line for a message (its name when that cannot be read)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            argv = stream.read(300).split(b"\0")
    except OSError:
        return name
    text = " ".join(a.decode("utf-8", "replace") for a in argv if a)
    return (text[:120] + "...") if len(text) > 120 else (text or name)


START_TREES_KEPT = 64  # the last starts whose forks are remembered (a failed one is cleaned up)


class StartForks:
    """What each start process forked, and their children (by the connector's fork events),
    remembered from its launch: a failed start stops them wherever they went (a daemon that
    called setsid() after its script ended is neither in its session nor below it)."""

    def __init__(self) -> None:
        self._trees: dict[int, set[Instance]] = {}  # start pid -> what it forked

    def watch(self, pid: int) -> None:
        self._trees.setdefault(pid, set())
        while len(self._trees) > START_TREES_KEPT:
            del self._trees[next(iter(self._trees))]

    def tree(self, pid: int) -> set[Instance]:
        return set(self._trees.get(pid, ()))

    def forked(self, forks: dict[int, int]) -> None:
        if not forks or not self._trees:
            return
        owner = {pid: pid for pid in self._trees}
        for start, tree in self._trees.items():
            owner.update((member.pid, start) for member in tree)
        for child, parent in forks.items():
            root = owner.get(parent)
            if root is None or len(self._trees[root]) >= 4096:
                continue
            try:
                born = read_stat(child).create_time
            except Gone:
                continue
            self._trees[root].add(Instance(child, born))
            owner[child] = root
