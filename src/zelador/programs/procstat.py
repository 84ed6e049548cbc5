"""One process read straight from /proc, as psutil would read it, but only what is asked.

`read_stat` is one read of /proc/PID/stat: name (comm), state, parent, session and start time;
it is all the process table needs of a process no program can match, which is nearly every
process (an exec elsewhere on the machine, most of a full scan). exe, cmdline and user are read
only for a process whose name leaves a program possible.

Identities must be psutil's to the last bit: other parts (the launcher, the reaper) take an
instance's create_time from psutil, and an instance is (pid, create_time). So the start time is
turned into seconds with psutil's own formula and boot time (tests/unit/test_procstat.py holds
the two equal on every Debian's psutil).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

import psutil
from psutil import _pslinux

COMM_LEN = 15  # TASK_COMM_LEN - 1: a longer name is cut in comm (psutil extends it from argv)


class Gone(Exception):
    """The process does not exist (any more)."""


@dataclass(frozen=True)
class Stat:
    pid: int
    name: str
    zombie: bool
    ppid: int
    sid: int
    create_time: float


def create_time(ticks: int) -> float:
    """psutil's create_time: start ticks after boot plus its (cached) boot time."""
    boot = getattr(_pslinux, "BOOT_TIME", None) or psutil.boot_time()
    return (float(ticks) / _pslinux.CLOCK_TICKS) + boot


def _read(path: str) -> bytes:
    """A small /proc file in one read(2), without a Python file object (half the cost: this
    runs for every exec on the machine)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def read_stat(pid: int) -> Stat:
    """/proc/PID/stat, or Gone."""
    try:
        data = _read(f"/proc/{pid}/stat")
    except OSError as exc:  # gone (or hidden from us: as good as gone)
        raise Gone(pid) from exc
    right = data.rfind(b")")
    name = data[data.find(b"(") + 1:right].decode("utf-8", "surrogateescape")
    fields = data[right + 2:].split()
    try:
        return Stat(pid, name, fields[0] in (b"Z", b"X"), int(fields[1]), int(fields[3]),
                    create_time(int(fields[19])))
    except (IndexError, ValueError) as exc:  # not a process's stat line: never trust a read
        raise Gone(pid) from exc


def read_cmdline(pid: int) -> list[str] | None:
    """The argv as psutil splits it ([] for a zombie or a kernel thread); None if denied."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            data = stream.read().decode("utf-8", "surrogateescape")
    except PermissionError:
        return None
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise Gone(pid) from exc
    if not data:
        return []
    sep = "\x00" if data.endswith("\x00") else " "
    if data.endswith(sep):
        data = data[:-1]
    argv = data.split(sep)
    if sep == "\x00" and len(argv) == 1 and " " in data:
        argv = data.split(" ")
    return argv


def full_name(stat: Stat, argv: list[str] | None) -> str:
    """psutil's name(): comm, or argv[0]'s base name when comm is that name cut short."""
    if len(stat.name) >= COMM_LEN and argv:
        extended = os.path.basename(argv[0])
        if extended.startswith(stat.name):
            return extended
    return stat.name


def read_exe(pid: int) -> str | None:
    """The executable's path ("" for a kernel thread); None if we may not read it."""
    try:
        path = os.readlink(f"/proc/{pid}/exe")
    except PermissionError:
        return None
    except (FileNotFoundError, ProcessLookupError) as exc:
        if os.path.lexists(f"/proc/{pid}"):
            return ""
        raise Gone(pid) from exc
    path = path.split("\x00")[0]
    if path.endswith(" (deleted)") and not os.path.exists(path):
        path = path[:-10]
    return path


def read_user(pid: int, names: dict[int, str]) -> str | None:
    """The name of the real user (psutil's username()); `names` caches uid -> name."""
    try:
        with open(f"/proc/{pid}/status", "rb") as stream:
            for line in stream:
                if line.startswith(b"Uid:"):
                    uid = int(line.split()[1])
                    break
            else:
                return None
    except PermissionError:
        return None
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise Gone(pid) from exc
    if uid not in names:
        try:
            names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            names[uid] = str(uid)
    return names[uid]


PAGE = os.sysconf("SC_PAGE_SIZE")


def read_usage(pid: int) -> tuple[float, float, float]:
    """(create_time, CPU seconds used, RSS bytes): what a memory or cpu rule reads, in two small
    reads (stat and statm), as psutil's cpu_times() and memory_info() compute them."""
    try:
        data = _read(f"/proc/{pid}/stat")
        pages = int(_read(f"/proc/{pid}/statm").split()[1])
        fields = data[data.rfind(b")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / _pslinux.CLOCK_TICKS
        return create_time(int(fields[19])), used, float(pages * PAGE)
    except (OSError, IndexError, ValueError) as exc:
        raise Gone(pid) from exc
