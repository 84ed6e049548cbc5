"""The process table, read from /proc, cheaply: only pids new since the last scan are read, and
of those, most only as far as their stat line (programs/procstat.py).

A process is `(pid, create_time)`. Zombies count as dead. Processes we may not read
(AccessDenied) are tolerated: a criterion we cannot check does not match. A pid seen less than
`YOUNG` seconds after it was created is read again on the next scans, because a freshly forked
`nohup` child has not yet exec'd into the program it will become.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Callable

import psutil

from zelador.config.model import Match, Program
from zelador.programs.family import Node, children_index, descendants, top_most
from zelador.programs.procstat import (
    COMM_LEN,
    Gone,
    Stat,
    full_name,
    read_cmdline,
    read_exe,
    read_stat,
    read_user,
)
from zelador.programs.proctree import describe, scope_of
from zelador.programs.states import Instance, Observed

Tree = tuple[dict[int, int], dict[int, list[Instance]], set[Instance]]
YOUNG = 1.0
PIDFILE_SLACK = 2.0  # boot-time rounding and drift between a process's start and a file's mtime
SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox"})
FULL_REFRESH = 600.0  # re-read every pid this often: a pid reused between two scans is caught


@dataclass(frozen=True)
class Proc:
    pid: int
    create_time: float
    name: str
    ppid: int = 0
    sid: int = 0  # its session: a start script's, for a wrapper that execs late
    exe: str | None = None
    cmdline: str | None = None
    user: str | None = None

    @property
    def instance(self) -> Instance:
        return Instance(self.pid, self.create_time)


def matches(match: Match, proc: Proc, pidfile_pid: int | None = None) -> bool:
    """True when every criterion of `match` holds for `proc` (pure: no /proc access)."""
    if match.name is not None and proc.name != match.name:
        return False
    if match.exe is not None and proc.exe != match.exe:
        return False
    if match.cmdline is not None and (proc.cmdline is None or
                                      not re.search(match.cmdline, proc.cmdline)):
        return False
    if match.user is not None and proc.user != match.user:
        return False
    return not (match.pidfile is not None and proc.pid != pidfile_pid)


def read_proc(pid: int, fields: frozenset[str], users: dict[int, str] | None = None,
              stat: Stat | None = None) -> Proc | None:
    """Read one process (its stat, and of exe/cmdline/user what `fields` asks), or None if it
    is gone or a zombie. An attribute we may not read is None (a criterion on it fails)."""
    try:
        stat = stat or read_stat(pid)
        if stat.zombie:
            return None
        argv = read_cmdline(pid) if "cmdline" in fields or len(stat.name) >= COMM_LEN else None
        exe = read_exe(pid) if "exe" in fields else None
        user = read_user(pid, {} if users is None else users) if "user" in fields else None
    except Gone:
        return None
    cmdline = " ".join(argv) if argv is not None and "cmdline" in fields else None
    return Proc(pid, stat.create_time, full_name(stat, argv), stat.ppid, stat.sid, exe, cmdline,
                user)


def alive(instance: Instance) -> bool:
    """True if this exact process (pid and start time) still runs and is not a zombie."""
    try:
        stat = read_stat(instance.pid)
    except Gone:
        return False
    return stat.create_time == instance.create_time and not stat.zombie


class ProcessTable:
    """Finds each program's processes; remembers what it read, so a scan reads only new pids."""

    def __init__(self, programs: Iterable[Program], *, exclude: Iterable[int] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._exclude = set(exclude) | {os.getpid()}
        self._known: dict[int, Proc | None] = {}  # pid -> what we read (None: not a candidate)
        self._hits: dict[int, set[str]] = {}  # pid -> programs it matches
        self._young: dict[int, float] = {}  # pid -> when we first read it (monotonic)
        self._dead: set[Instance] = set()  # seen to die; a lingering zombie is never a match
        self._families: dict[Instance, frozenset[Instance]] = {}  # instance -> its family
        self._tree: Tree | None = None  # parents, children, live: see _process_tree
        self._starts: dict[str, int] = {}  # program -> its running start process's pid
        self._refreshed = clock()
        # psutil's create_time is boot time + start ticks, with boot time read once and cached;
        # this reads the same value (and nothing here reads it again, so identities stay put).
        self._btime = psutil.boot_time()
        self.configure(programs)

    def configure(self, programs: Iterable[Program]) -> None:
        """Take a (re)loaded config: recompute every cached process's matches."""
        self._programs = {p.name: p.match for p in programs}
        fields: set[str] = set()
        for match in self._programs.values():
            fields |= match.fields()
        self._fields = frozenset(fields)
        # What a process's name tells: a program with a name can match only a process of that
        # name (cut to comm's length), one without a name may match any. Most processes are
        # read no further than their stat.
        nameless = [m for m in self._programs.values() if m.pidfile is None and m.name is None]
        self._nameless = bool(nameless)
        self._anyone = frozenset().union(*(m.fields() for m in nameless))
        self._by_comm: dict[str, frozenset[str]] = {}
        for match in self._programs.values():
            if match.pidfile is None and match.name is not None:
                comm = match.name[:COMM_LEN]
                self._by_comm[comm] = self._by_comm.get(comm, frozenset()) | match.fields()
        self._users: dict[int, str] = {}
        self._read_all_again()

    def _read_all_again(self) -> None:
        """Forget what was read, so the next scan reads every process afresh."""
        self._known.clear()
        self._hits.clear()
        self._young.clear()
        self._tree = None

    def scan(self, watched: Collection[int] = (), sessions: Collection[int] = ()
             ) -> dict[str, Observed]:
        """What each program looks like now: its top-most live match, and any others.

        `watched` pids have a pidfd on them, so their exit arrives on its own: they are not
        read again, which keeps an idle scan to one listing of /proc. Processes in `sessions`
        (those of start scripts whose program has not appeared) are read again each time: a
        wrapper there may exec into the program late (without exec events, the only way).
        """
        pids = {int(entry) for entry in os.listdir("/proc") if entry.isdigit()}
        for pid in list(self._known):
            if pid not in pids:
                self._forget(pid)
        self._dead = {i for i in self._dead if i.pid in pids}
        now = self._clock()
        if now - self._refreshed >= FULL_REFRESH:
            self._refreshed = now
            self._read_all_again()
        again = {i.pid for i in self._dead}
        if sessions:
            again |= {pid for pid, p in self._known.items()
                      if p is not None and p.sid in sessions and pid not in self._hits}
        for pid in pids - self._known.keys() | self._young.keys() | again:
            self._inspect(pid, now)
        for pid in [p for p in self._hits if p not in self._young and p not in watched]:
            self._recheck(pid, now)
        return self._verdicts()

    def set_starts(self, starts: dict[str, int]) -> None:
        """The start processes still running, per program: never its instance while they run
        (a self-daemonizing `nginx` before its fork), and what they start is not a duplicate."""
        if starts != self._starts:
            self._starts = dict(starts)
            self._tree = None

    def refresh(self, pids: Iterable[int]) -> dict[str, Observed]:
        """Read just these pids again (they exec'd: the proc connector said so); the verdicts.

        No listing of /proc: an exec anywhere on the machine costs one read of that pid, and the
        verdicts are worked out again only when one of them matches (or matched) a program."""
        now = self._clock()
        changed = False
        for pid in pids:
            changed = changed or pid in self._hits
            self._young.pop(pid, None)
            self._known.pop(pid, None)
            self._inspect(pid, now)
            changed = changed or pid in self._hits
            self._grow(pid)
        return self._verdicts() if changed else {}

    def _grow(self, pid: int) -> None:
        """A process that exec'd below a living instance (or its family) joins that family now,
        not at the next full look: a worker forked a moment ago is still part of the tree."""
        proc = self._known.get(pid)
        if proc is None:
            return
        for instance, family in self._families.items():
            if proc.ppid == instance.pid or any(member.pid == proc.ppid for member in family):
                self._families[instance] = family | {proc.instance}

    def forked(self, forks: dict[int, int]) -> None:
        """The connector's fork events (child -> parent): a child of a watched instance or of
        its family joins that family at once, so workers forked without an exec (nginx's) are
        known as its tree when it dies, before any look has read them."""
        if not forks or not self._families:
            return
        owner: dict[int, Instance] = {}
        for instance, family in self._families.items():
            owner[instance.pid] = instance
            owner.update((member.pid, instance) for member in family)
        for child, parent in forks.items():
            root = owner.get(parent)
            if root is None or root in self._dead:
                continue
            try:
                born = read_stat(child).create_time
            except Gone:
                continue
            self._families[root] = self._families[root] | {Instance(child, born)}
            owner[child] = root

    def member(self, pid: int) -> tuple[Instance, Instance, str] | None:
        """(its instance, itself, its name) when `pid` is in a watched instance's family."""
        for instance, family in self._families.items():
            for member in family:
                if member.pid == pid:
                    proc = self._known.get(pid)
                    return instance, member, proc.name if proc is not None else "?"
        return None

    def remember(self, instance: Instance, members: Iterable[Instance]) -> None:
        """Add `members` (read now, while `instance` lives) to its remembered family."""
        self._families[instance] = self._families.get(instance, frozenset()) | frozenset(members)

    def parent(self, instance: Instance) -> tuple[Instance, str, bool] | None:
        """The live parent of `instance` when it is neither zelador nor init (a launcher that may
        start it again), with what it is ("pid 12 (sh -c while ...)") and whether nobody else
        holds it (its own parent is init or zelador: a nohup'd loop); from what was read."""
        proc = self._known.get(instance.pid)
        if proc is None or proc.instance != instance:
            return None
        return self._launcher(proc)

    def _launcher(self, proc: Proc) -> tuple[Instance, str, bool] | None:
        if proc.ppid <= 1 or proc.ppid in self._exclude:
            return None
        parent = self._known.get(proc.ppid)
        if parent is None or parent.instance in self._dead:
            return None
        # loose: nobody else holds it, so it may be stopped with what it starts: zelador's own
        # child (an orphaned start's loop), or a shell loop given to init, or anything in one of
        # zelador's scopes; never a session manager or `systemd --user` (init's children too)
        loose = parent.ppid in self._exclude or (parent.ppid <= 1 and (
            parent.name in SHELLS or bool(scope_of(parent.pid))))
        return parent.instance, f"pid {parent.pid} ({describe(parent.pid, parent.name)})", loose

    def forget(self, instance: Instance) -> None:
        """`instance` died: drop it from every cache now, so no scan can match it again.

        Its pid stays known as "not a candidate" while the same process (a zombie not yet
        reaped by its parent) is still in /proc; a new process on that pid is read afresh.
        """
        self._dead.add(instance)
        self._hits.pop(instance.pid, None)
        self._young.pop(instance.pid, None)
        self._known[instance.pid] = None
        self._tree = None

    def _inspect(self, pid: int, now: float) -> None:
        self._tree = None
        if pid in self._exclude:
            self._known[pid] = None
            return
        try:
            stat = read_stat(pid)
        except Gone:
            stat = None
        candidate = stat is not None and (self._nameless or stat.name in self._by_comm)
        fields = self._anyone | self._by_comm.get(stat.name, frozenset()) if stat else frozenset()
        proc = read_proc(pid, fields, self._users, stat) if stat else None
        previous = self._known.get(pid)
        if previous is not None and proc is not None and previous.create_time != proc.create_time:
            self._forget(pid)
        self._known[pid] = proc
        first_seen = self._young.pop(pid, None)
        if proc is None or proc.instance in self._dead:
            self._hits.pop(pid, None)
            return
        if first_seen is None and self._age(proc) < YOUNG:
            first_seen = now
        if first_seen is not None and now - first_seen < YOUNG:  # maybe not exec'd yet
            self._young[pid] = first_seen
        hits = {name for name, match in self._programs.items()
                if match.pidfile is None and matches(match, proc)} if candidate else set()
        if hits:
            self._hits[pid] = hits
        else:
            self._hits.pop(pid, None)

    def _age(self, proc: Proc) -> float:
        """How long ago the process started, on the boot clock: a wall-clock step (NTP, a
        cashier fixing the date) neither makes every pid young nor none."""
        return time.clock_gettime(time.CLOCK_BOOTTIME) - (proc.create_time - self._btime)

    def _recheck(self, pid: int, now: float) -> None:
        """A matched pid: still the same process, and not a zombie? If not, read it afresh."""
        proc = self._known.get(pid)
        if proc is None or not alive(proc.instance):
            self._forget(pid)
            self._inspect(pid, now)

    def _forget(self, pid: int) -> None:
        self._tree = None
        self._known.pop(pid, None)
        self._hits.pop(pid, None)
        self._young.pop(pid, None)

    def _verdicts(self) -> dict[str, Observed]:
        """Per program: the top-most match is the instance, other top-most matches are
        duplicates, matches below the instance are its family (programs/family.py)."""
        found: dict[str, list[Proc]] = {name: [] for name in self._programs}
        for pid, names in self._hits.items():
            proc = self._known.get(pid)
            if proc is None:
                continue
            for name in names:
                found[name].append(proc)
        parent_of, children, live = self._process_tree()
        verdicts = {}
        for name, procs in found.items():
            match = self._programs[name]
            if match.pidfile is not None:
                procs = self._by_pidfile(match)
            start_pid = self._starts.get(name)
            start = next((p.instance for p in procs if p.pid == start_pid), None)
            if start is not None:  # still the start: what it forks may be the program
                procs = [p for p in procs if p.pid != start_pid]
            roots = [n.instance for n in top_most([Node(p.instance, p.ppid) for p in procs],
                                                   parent_of)]
            instance = roots[0] if roots else None
            family: frozenset[Instance] = frozenset()
            if instance is not None:
                family = descendants(instance.pid, children)
                remembered = self._families.get(instance, frozenset()) & live
                self._families[instance] = family = family | remembered
            duplicates = tuple(r for r in roots[1:] if r not in family)
            age = next((self._age(p) for p in procs if p.instance == instance), None)
            verdicts[name] = Observed(instance, duplicates, len(family), age, start,
                                      self._launchers(procs, instance, duplicates))
        current = {v.instance for v in verdicts.values()}
        for old in [i for i in self._families if i not in current and i not in live]:
            del self._families[old]  # died and handled: its family was taken at the death
        return verdicts

    def _process_tree(self) -> Tree:
        """Parents, children and live identities of every known process, rebuilt only when what
        the table knows has changed (an idle look re-reads nothing and rebuilds nothing)."""
        if self._tree is None:
            nodes = [Node(p.instance, p.ppid) for p in self._known.values() if p is not None]
            self._tree = ({n.instance.pid: n.ppid for n in nodes}, children_index(nodes),
                          {n.instance for n in nodes})
        return self._tree

    def _launchers(self, procs: list[Proc], instance: Instance | None,
                   duplicates: tuple[Instance, ...]
                   ) -> tuple[tuple[Instance, Instance, str, bool], ...]:
        """Each duplicate's launcher (its live parent, neither zelador nor init), unless that is
        also the instance's own launcher (stopping it would stop the program)."""
        if not duplicates:
            return ()
        by_pid = {p.pid: p for p in procs}
        own = by_pid.get(instance.pid) if instance is not None else None
        own_parent = own.ppid if own is not None else 0
        out = []
        for dup in duplicates:
            proc = by_pid.get(dup.pid)
            found = self._launcher(proc) if proc is not None and proc.ppid != own_parent else None
            if found is not None:  # stopped with it only when nobody else holds it
                out.append((dup, *found))
        return tuple(out)

    def family(self, instance: Instance) -> frozenset[Instance]:
        """The processes remembered below `instance` while it lived (workers, helpers)."""
        return self._families.get(instance, frozenset())

    def live(self) -> set[Instance]:
        """Every process the table knows to be alive."""
        return self._process_tree()[2] - self._dead

    def _by_pidfile(self, match: Match) -> list[Proc]:
        wanted = read_pidfile(match.pidfile or "")
        if wanted is None or wanted in self._exclude:
            return []
        proc = self._known.get(wanted)
        if proc is None or not alive(proc.instance):
            proc = read_proc(wanted, self._fields, self._users)
        if proc is None or not matches(match, proc, wanted):
            return []
        return [proc] if self._wrote_pidfile(proc, match.pidfile or "") else []

    def _wrote_pidfile(self, proc: Proc, path: str) -> bool:
        """A pidfile names its process only if that process started no later than the file was
        last written: a stale pidfile's pid reused by a later process is not the program. The
        process's start is taken on the wall clock both as read when zelador started and as now
        (a date set by hand between its start and the file's write must not make it a stranger)."""
        try:
            written = os.stat(path).st_mtime
        except OSError:
            return False
        ticks = proc.create_time - self._btime  # since boot
        btime_now = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        return min(proc.create_time, btime_now + ticks) <= written + PIDFILE_SLACK



def read_pidfile(path: str) -> int | None:
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
