"""The kernel's process events (the netlink proc connector): which pids just exec'd.

With it, a new process is noticed when it execs (a duplicate started by hand, a wrapper that
becomes the program after 5 s, a late `nohup` child), within milliseconds and with no "young
pid" window; only the pids that exec'd are read. It needs root (CAP_NET_ADMIN) and the initial
pid namespace (events carry the host's pids); elsewhere `open_proc_events` returns None and the
interval scan is the only way. Lost events (the socket buffer overflowed: ENOBUFS) are reported
as `overflow`, and the caller rescans everything.

The connector tells every fork, exec, exit, uid, gid, sid and comm change of every process and
thread on the machine. A classic BPF socket filter (`event_filter`) makes the kernel drop, before
zelador wakes or the buffer fills, every event kind the caller did not ask for and every thread's
fork and exit: a busy machine that execs 200 times a second costs zelador 200 small datagrams,
not 1,000. One datagram is one netlink message (the kernel sends each event on its own):

    offset  size  field
     0      16    struct nlmsghdr (len, type, flags, seq, pid)
    16      20    struct cn_msg (idx, val, seq, ack, len u16, flags u16)
    36       4    struct proc_event: what (PROC_EVENT_*)
    40       4                       cpu
    44       8                       timestamp_ns
    52            event_data: exec  {process_pid, process_tgid}
                              fork  {parent_pid, parent_tgid, child_pid, child_tgid}
                              exit  {process_pid, process_tgid, exit_code, exit_signal, ...}

All in host byte order; classic BPF's absolute loads read big-endian, so the filter compares
with byte-swapped constants (socket.htonl, right on either endianness).

No Debian-packaged Python library covers the connector (python3-pyroute2 speaks rtnetlink, not
the connector), so this is a small module: subscribe, filter, read datagrams, parse two structs.
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import socket
import struct
from collections.abc import Collection
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
KINDS = {"fork": PROC_EVENT_FORK, "exec": PROC_EVENT_EXEC, "exit": PROC_EVENT_EXIT}
SO_ATTACH_FILTER = 26  # asm-generic/socket.h (x86, arm, arm64, riscv ...)
SO_DETACH_FILTER = 27

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_EXEC = struct.Struct("=II")  # process_pid, process_tgid (exit starts the same way)
_FORK = struct.Struct("=IIII")  # parent_pid, parent_tgid, child_pid, child_tgid
_EXIT = struct.Struct("=III")  # process_pid, process_tgid, exit_code (then exit_signal ...)
WHAT_AT = _NLMSGHDR.size + _CN_MSG.size  # 36
DATA_AT = WHAT_AT + _EVENT_HEAD.size  # 52

# classic BPF (linux/filter.h): struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_INSN = struct.Struct("=HBBI")
_LD_W_ABS, _JEQ_K, _JEQ_X, _RET_K, _TAX = 0x20, 0x15, 0x1D, 0x06, 0x07
_ACCEPT, _DROP = 0xFFFF, 0


@dataclass
class Batch:
    execs: set[int] = field(default_factory=set)  # processes (not threads) that exec'd
    forks: dict[int, int] = field(default_factory=dict)  # new process -> its parent
    exits: set[int] = field(default_factory=set)  # processes (not threads) that ended
    statuses: dict[int, int] = field(default_factory=dict)  # ended process -> its wait status
    overflow: bool = False  # events were lost: look at everything


def in_initial_pid_namespace() -> bool:
    """True when our pids are the host's (a container's connector events would not be ours)."""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("NSpid:"):
                    return len(line.split()) == 2
    except OSError:
        return False
    return True  # kernels without NSpid have no pid namespaces to worry about


def subscribe_message() -> bytes:
    payload = struct.pack("=I", PROC_CN_MCAST_LISTEN)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0)
    size = _NLMSGHDR.size + len(cn) + len(payload)
    return _NLMSGHDR.pack(size, NLMSG_DONE, 0, 0, os.getpid()) + cn + payload


def event_filter(kinds: Collection[str]) -> list[tuple[int, int, int, int]]:
    """The BPF program that passes only these kinds of event ("exec", "fork", "exit"), and each
    only when it is a process's (a thread's has pid != tgid: dropped).

    A load past the end of a short datagram ends the program with 0, so it is dropped too."""
    wanted = [KINDS[k] for k in ("exec", "fork", "exit") if k in kinds]
    # the body of each kind: pass when pid == tgid (fork: child_pid and child_tgid; exec and
    # exit: process_pid and process_tgid), so a thread's events are dropped
    bodies = {}
    for kind, at in ((PROC_EVENT_EXEC, DATA_AT), (PROC_EVENT_FORK, DATA_AT + 8),
                     (PROC_EVENT_EXIT, DATA_AT)):
        bodies[kind] = [(_LD_W_ABS, 0, 0, at), (_TAX, 0, 0, 0), (_LD_W_ABS, 0, 0, at + 4),
                        (_JEQ_X, 0, 1, 0), (_RET_K, 0, 0, _ACCEPT), (_RET_K, 0, 0, _DROP)]
    program = [(_LD_W_ABS, 0, 0, WHAT_AT)]
    tests = len(wanted)
    target = tests + 1  # the first body starts after the tests and the "drop" after them
    for i, kind in enumerate(wanted):
        program.append((_JEQ_K, target - i - 1, 0, socket.htonl(kind)))
        target += len(bodies[kind])
    program.append((_RET_K, 0, 0, _DROP))
    for kind in wanted:
        program.extend(bodies[kind])
    return program


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """setsockopt(SO_ATTACH_FILTER, struct sock_fprog {u16 len; struct sock_filter *filter})."""
    code = array.array("B", b"".join(_INSN.pack(*insn) for insn in program))
    address = code.buffer_info()[0]
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("@HP", len(program), address))


def parse(datagram: bytes, batch: Batch) -> None:
    """Add the events of one datagram (one or more netlink messages) to `batch`."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(datagram):
        length = _NLMSGHDR.unpack_from(datagram, offset)[0]
        if length < _NLMSGHDR.size:
            return
        body = offset + _NLMSGHDR.size
        end = min(offset + length, len(datagram))
        if body + _CN_MSG.size + _EVENT_HEAD.size <= end:
            idx, val = _CN_MSG.unpack_from(datagram, body)[:2]
            event = body + _CN_MSG.size
            what = _EVENT_HEAD.unpack_from(datagram, event)[0]
            data = event + _EVENT_HEAD.size
            if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC):
                _add(what, datagram, data, end, batch)
        offset += (length + 3) & ~3  # NLMSG_ALIGN


def _add(what: int, datagram: bytes, data: int, end: int, batch: Batch) -> None:
    if what == PROC_EVENT_FORK and data + _FORK.size <= end:
        parent, _, child, child_tgid = _FORK.unpack_from(datagram, data)
        if child == child_tgid:
            batch.forks[child] = parent
    elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT) and data + _EXEC.size <= end:
        pid, tgid = _EXEC.unpack_from(datagram, data)
        if pid == tgid:
            (batch.execs if what == PROC_EVENT_EXEC else batch.exits).add(pid)
        if pid == tgid and what == PROC_EVENT_EXIT and data + _EXIT.size <= end:
            batch.statuses[pid] = _EXIT.unpack_from(datagram, data)[2]  # as wait(2) gives it


class ProcEvents:
    """A subscribed connector socket; `read()` drains it without blocking."""

    def __init__(self, sock: socket.socket, kinds: Collection[str]) -> None:
        self._sock = sock
        self.kinds = frozenset(kinds)

    def fileno(self) -> int:
        return self._sock.fileno()

    def ask(self, kinds: Collection[str]) -> None:
        """Pass these kinds of event from now on (a reload that needs more, or less)."""
        if frozenset(kinds) != self.kinds:
            try:
                attach_filter(self._sock, event_filter(kinds))
            except OSError:  # (cannot happen) then no filter: more wake-ups, nothing missed
                with contextlib.suppress(OSError):
                    self._sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            self.kinds = frozenset(kinds)

    def read(self) -> Batch:
        batch = Batch()
        while True:
            try:
                datagram = self._sock.recv(65536)
            except BlockingIOError:
                return batch
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    batch.overflow = True
                    continue
                raise
            parse(datagram, batch)

    @property
    def closed(self) -> bool:
        return self._sock.fileno() < 0

    def close(self) -> None:
        self._sock.close()


def open_proc_events(kinds: Collection[str] = ("exec",),
                     buffer: int = 1 << 20) -> ProcEvents | None:
    """Subscribe to these kinds of event, or None where the connector cannot serve us."""
    if os.geteuid() != 0 or not in_initial_pid_namespace():
        return None
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except (OSError, AttributeError):
        return None
    try:
        attach_filter(sock, event_filter(kinds))  # before anything can be queued
        sock.bind((0, CN_IDX_PROC))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
        sock.send(subscribe_message())
        sock.setblocking(False)
    except OSError:
        with contextlib.suppress(OSError):
            sock.close()
        return None
    return ProcEvents(sock, kinds)
