"""The kernel's process events (the netlink proc connector): which pids just exec'd.

With it, a new process is noticed when it execs (a duplicate started by hand, a wrapper that
becomes the program after 5 s, a late `nohup` child), within milliseconds and with no "young
pid" window; only the pids that exec'd are read. It needs root (CAP_NET_ADMIN) and the initial
pid namespace (events carry the host's pids); elsewhere `open_proc_events` returns None and the
interval scan is the only way. Lost events (the socket buffer overflowed: ENOBUFS) are reported
as `overflow`, and the caller rescans everything.

No Debian-packaged Python library covers the connector (python3-pyroute2 speaks rtnetlink, not
the connector), so this is a small module: subscribe, read datagrams, parse two structs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from dataclasses import dataclass, field

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3
PROC_EVENT_EXEC = 0x00000002

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")  # idx, val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_EXEC = struct.Struct("=II")  # process_pid, process_tgid


@dataclass
class Batch:
    execs: set[int] = field(default_factory=set)  # processes (not threads) that exec'd
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


def parse(datagram: bytes, batch: Batch) -> None:
    """Add the exec events of one datagram (one or more netlink messages) to `batch`."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(datagram):
        length = _NLMSGHDR.unpack_from(datagram, offset)[0]
        if length < _NLMSGHDR.size:
            return
        body = offset + _NLMSGHDR.size
        if body + _CN_MSG.size + _EVENT_HEAD.size <= len(datagram):
            idx, val = _CN_MSG.unpack_from(datagram, body)[:2]
            event = body + _CN_MSG.size
            what = _EVENT_HEAD.unpack_from(datagram, event)[0]
            data = event + _EVENT_HEAD.size
            if (idx, val) == (CN_IDX_PROC, CN_VAL_PROC) and what == PROC_EVENT_EXEC \
                    and data + _EXEC.size <= len(datagram):
                pid, tgid = _EXEC.unpack_from(datagram, data)
                if pid == tgid:
                    batch.execs.add(pid)
        offset += (length + 3) & ~3  # NLMSG_ALIGN


class ProcEvents:
    """A subscribed connector socket; `read()` drains it without blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

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

    def close(self) -> None:
        self._sock.close()


def open_proc_events() -> ProcEvents | None:
    """Subscribe to exec events, or None where the connector cannot serve us."""
    if os.geteuid() != 0 or not in_initial_pid_namespace():
        return None
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except (OSError, AttributeError):
        return None
    try:
        sock.bind((0, CN_IDX_PROC))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.send(subscribe_message())
        sock.setblocking(False)
    except OSError:
        with contextlib.suppress(OSError):
            sock.close()
        return None
    return ProcEvents(sock)
