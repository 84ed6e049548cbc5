"""The proc connector's wire format, parsed from hand-built datagrams (the layout of
linux/connector.h and linux/cn_proc.h), the subscription message we send, and the BPF filter:
run by a small interpreter of classic BPF here, and by this kernel on real forks and execs."""

from __future__ import annotations

import itertools
import socket
import struct
import subprocess
import threading

import pytest

from zelador.programs.procevents import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    Batch,
    event_filter,
    open_proc_events,
    parse,
    subscribe_message,
)

PROC_EVENT_UID = 0x4
PROC_EVENT_COMM = 0x200


def message(what: int, *data: int) -> bytes:
    payload = struct.pack("=IIQ", what, 0, 123456789) + struct.pack(f"={len(data)}I", *data)
    cn = struct.pack("=IIIIHH", CN_IDX_PROC, CN_VAL_PROC, 7, 0, len(payload), 0)
    body = cn + payload
    size = 16 + len(body)
    padding = b"\0" * ((size + 3 & ~3) - size)
    return struct.pack("=IHHII", size, 3, 0, 7, 0) + body + padding


def test_exec_of_a_process_is_collected():
    batch = Batch()
    parse(message(PROC_EVENT_EXEC, 4242, 4242), batch)
    assert batch.execs == {4242}


def test_exec_of_a_thread_is_ignored_and_fork_and_exit_too():
    batch = Batch()
    parse(message(PROC_EVENT_EXEC, 4243, 4242), batch)  # a thread: pid != tgid
    parse(message(PROC_EVENT_FORK, 1, 1, 4244, 4244), batch)
    parse(message(PROC_EVENT_EXIT, 4245, 4245, 0, 17), batch)
    assert batch.execs == set()


def test_several_messages_in_one_datagram_and_a_truncated_tail():
    batch = Batch()
    data = message(PROC_EVENT_EXEC, 10, 10) + message(PROC_EVENT_EXEC, 11, 11)
    parse(data + message(PROC_EVENT_EXEC, 12, 12)[:30], batch)
    assert batch.execs == {10, 11}


def test_subscription_asks_to_listen():
    data = subscribe_message()
    size, kind = struct.unpack_from("=IH", data)
    idx, val = struct.unpack_from("=II", data, 16)
    assert size == len(data) == 40 and kind == 3 and (idx, val) == (CN_IDX_PROC, CN_VAL_PROC)
    assert struct.unpack_from("=I", data, 36)[0] == PROC_CN_MCAST_LISTEN


def run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """Classic BPF as the kernel runs it, for the instructions the filter uses (loads are
    big-endian; a load past the end returns 0)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            if k + 4 > len(packet):
                return 0
            a = struct.unpack_from(">I", packet, k)[0]
        elif code == 0x07:  # tax
            x = a
        elif code in (0x15, 0x1D):  # jeq #k / jeq x
            pc += jt if a == (k if code == 0x15 else x) else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected BPF code {code:#x}")


def cases() -> dict[str, bytes]:
    return {"exec": message(PROC_EVENT_EXEC, 50, 50),
            "fork": message(PROC_EVENT_FORK, 1, 1, 51, 51),
            "exit": message(PROC_EVENT_EXIT, 52, 52, 0, 17),
            "thread fork": message(PROC_EVENT_FORK, 50, 50, 53, 50),
            "thread exit": message(PROC_EVENT_EXIT, 53, 50, 0, 0),
            "uid": message(PROC_EVENT_UID, 50, 50, 0, 0),
            "comm": message(PROC_EVENT_COMM, 50, 50, 0, 0),
            "short": message(PROC_EVENT_EXEC, 50, 50)[:40],
            "thread exec": message(PROC_EVENT_EXEC, 53, 50)}


@pytest.mark.parametrize("kinds", [k for n in range(4)
                                   for k in itertools.combinations(("exec", "fork", "exit"), n)])
def test_the_filter_passes_exactly_the_kinds_asked_for_and_no_thread(kinds):
    program = event_filter(kinds)
    passed = {name for name, packet in cases().items() if run_bpf(program, packet)}
    assert passed == set(kinds)


def test_fork_and_exit_of_processes_are_collected_and_of_threads_not():
    batch = Batch()
    for packet in cases().values():
        parse(packet, batch)
    assert (batch.execs, batch.forks, batch.exits) == ({50}, {51: 1}, {52})


connector = pytest.mark.skipif(open_proc_events() is None,
                               reason="the proc connector needs root in the initial pid namespace")


def datagrams(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


@connector
@pytest.mark.parametrize("kinds", [("exec",), ("exec", "fork", "exit")])
def test_this_kernel_delivers_only_what_the_filter_passes(kinds):
    """Real execs, and a thread started and ended: only the kinds asked for arrive, and no
    event of a thread. The process's events all arrive."""
    events = open_proc_events(kinds)
    assert events is not None
    try:
        datagrams(events._sock)
        children = [subprocess.Popen(["/bin/true"]) for _ in range(5)]
        worker = threading.Thread(target=lambda: None)
        worker.start()
        worker.join()
        for child in children:
            child.wait()
        pids = {c.pid for c in children}
        got = []
        wanted = {"exec": pids, "fork": pids, "exit": pids}
        for _ in range(200):  # the kernel delivers at once; allow for a slow machine
            got += datagrams(events._sock)
            batch = Batch()
            for packet in got:
                parse(packet, batch)
            if all(wanted[k] <= {"exec": batch.execs, "fork": set(batch.forks),
                                 "exit": batch.exits}[k] for k in kinds):
                break
            threading.Event().wait(0.01)
        whats = {struct.unpack_from("=I", packet, 36)[0] for packet in got}
        names = {PROC_EVENT_EXEC: "exec", PROC_EVENT_FORK: "fork", PROC_EVENT_EXIT: "exit"}
        assert {names.get(w, hex(w)) for w in whats} == set(kinds)
        assert pids <= batch.execs
        for packet in got:  # no thread's fork or exit: pid == tgid in each
            what = struct.unpack_from("=I", packet, 36)[0]
            if what == PROC_EVENT_FORK:
                assert struct.unpack_from("=II", packet, 60) == (struct.unpack_from("=I", packet, 64)[0],) * 2
            if what == PROC_EVENT_EXIT:
                assert struct.unpack_from("=I", packet, 52) == struct.unpack_from("=I", packet, 56)
    finally:
        events.close()


@connector
def test_a_burst_that_overflows_the_buffer_is_told_as_overflow():
    """Events lost (ENOBUFS) are reported, so the supervisor reads everything again."""
    events = open_proc_events(("exec",), buffer=1)  # the kernel's minimum, a few datagrams
    assert events is not None
    try:
        burst = subprocess.run(["sh", "-c", "for i in $(seq 300); do /bin/true; done"],
                               check=True)
        assert burst.returncode == 0
        batch = events.read()
        assert batch.overflow
        assert not events.read().overflow  # told once
    finally:
        events.close()


@connector
def test_asking_for_more_kinds_later_passes_them_from_then_on():
    """A reload that needs forks too: the filter is replaced on the open socket."""
    events = open_proc_events(("exec",))
    assert events is not None
    try:
        events.ask(("exec", "fork"))
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        batch = Batch()
        for _ in range(200):
            got = events.read()
            batch.execs |= got.execs
            batch.forks.update(got.forks)
            if child.pid in batch.forks and child.pid in batch.execs:
                break
            threading.Event().wait(0.01)
        assert child.pid in batch.forks and child.pid in batch.execs
    finally:
        events.close()


def test_an_exit_tells_its_wait_status():
    batch = Batch()
    parse(message(PROC_EVENT_EXIT, 60, 60, 11, 17), batch)  # killed by SIGSEGV
    parse(message(PROC_EVENT_EXIT, 61, 61, 3 << 8, 17), batch)  # exit(3)
    parse(message(PROC_EVENT_EXIT, 62, 61, 0, 0), batch)  # a thread
    assert batch.statuses == {60: 11, 61: 3 << 8} and batch.exits == {60, 61}
