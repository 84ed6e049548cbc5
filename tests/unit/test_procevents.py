"""The proc connector's wire format, parsed from hand-built datagrams (the layout of
linux/connector.h and linux/cn_proc.h), and the subscription message we send."""

from __future__ import annotations

import struct

from zelador.programs.procevents import (
    CN_IDX_PROC,
    CN_VAL_PROC,
    PROC_CN_MCAST_LISTEN,
    PROC_EVENT_EXEC,
    Batch,
    parse,
    subscribe_message,
)

PROC_EVENT_FORK = 0x1
PROC_EVENT_EXIT = 0x80000000


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
