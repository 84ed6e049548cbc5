"""Issue 19's intake figures: supervision under hostile report traffic, memory under a flood.

    .venv/bin/python -m bench.reports [--kills 6] [--gap 10.5] [--flood-seconds 55]

Run as root on an otherwise quiet machine. One zelador (the shipped restart policy) watches a
stand-in Comunicador and has jobs (bench/jobs.py's config: default settings, so max_open_runs
100, max_connections 256, idle_timeout 10s); its intake listens on a free loopback port.

1. kill -> restart latency of Comunicador, interleaved so every kind sees the same machine:
   quiet, (a) 20,000 START lines with distinct run ids on one connection (100 open at most, the
   rest ERR too many open runs), (b) a malformed-line flood at full speed (2 connections
   pipelining garbage), (c) 256 slowloris connections trickling a byte each every 0.5 s (with a
   real client sending whole reports meanwhile: how many got OK is printed). The load runs in a
   process of its own at nice 19 (other machines on the network), starts 1 s before the kill
   and goes on until the program is back. p50/p90 per kind, ratio to quiet.
2. zelador's RSS (the daemon; the worker's too) before and after `--flood-seconds` of the
   malformed-line flood, and how many lines it answered.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from bench.jobs import free_port, start
from bench.supervisors import Layout, find, pct, settle, wait_new

GARBAGE = b"#id=25;state=MAYBE;name=nightly;exit=99999999999999999999\n" * 2000


def _reader(conn: socket.socket, stop: threading.Event, counted: list[int]) -> None:
    while not stop.is_set():
        try:
            chunk = conn.recv(1 << 20)
        except OSError:
            return
        if not chunk:
            return
        counted[0] += chunk.count(b"\n")


def malformed(port: int, stop: threading.Event, counted: list[int]) -> None:
    """One connection pipelining garbage as fast as it is read (again when closed)."""
    while not stop.is_set():
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            time.sleep(0.05)
            continue
        reader = threading.Thread(target=_reader, args=(conn, stop, counted), daemon=True)
        reader.start()
        try:
            while not stop.is_set():
                conn.sendall(GARBAGE)
        except OSError:
            pass
        conn.close()
        reader.join(5)


def starts(port: int, stop: threading.Event, counted: list[int]) -> None:
    """20,000 START lines with distinct run ids, pipelined on one connection."""
    tag = random.randrange(1 << 30)
    payload = b"".join(b"name=quick;state=START;run=b%d-%d\n" % (tag, i) for i in range(20_000))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            reader = threading.Thread(target=_reader, args=(conn, stop, counted), daemon=True)
            reader.start()
            conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            reader.join(60)
    except OSError:
        pass


def slowloris(port: int, stop: threading.Event, counted: list[int]) -> None:
    """256 connections sending a byte each every 0.5 s (reconnecting when dropped), and a real
    client sending one whole report per connection meanwhile (counted when answered OK)."""
    held: list[socket.socket] = []

    def real() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.sendall(b"name=quick;state=OK\n")
                    if conn.recv(16) == b"OK\n":
                        counted[0] += 1
            except OSError:
                pass
            stop.wait(0.1)

    client = threading.Thread(target=real, daemon=True)
    client.start()
    while not stop.is_set():
        for conn in list(held):
            try:
                conn.send(b"n")
            except OSError:
                held.remove(conn)
                conn.close()
        while len(held) < 256 and not stop.is_set():
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        stop.wait(0.5)
    for conn in held:
        conn.close()
    client.join(5)


LOADS: dict[str, Callable[[int, threading.Event, list[int]], None] | None] = {
    "quiet": None, "20,000 STARTs": starts, "malformed flood": malformed,
    "256 slowloris": slowloris}


def _load_process(load: Callable[[int, threading.Event, list[int]], None], port: int,
                  copies: int, done: Any, counted: Any) -> None:
    """A load in a process of its own at nice 19: it stands for other machines on the network
    (whose CPU is not the terminal's), and it keeps the measuring process quiet."""
    os.nice(19)
    stop = threading.Event()
    count = [0]
    threads = [threading.Thread(target=load, args=(port, stop, count), daemon=True)
               for _ in range(copies)]
    for thread in threads:
        thread.start()
    done.wait()
    stop.set()
    for thread in threads:
        thread.join(30)
    counted.value = count[0]


def start_load(kind: str, port: int) -> tuple[Any, Any, Any] | None:
    load = LOADS[kind]
    if load is None:
        return None
    done, counted = multiprocessing.Event(), multiprocessing.Value("q", 0)
    proc = multiprocessing.Process(target=_load_process, args=(
        load, port, 2 if load is malformed else 1, done, counted))
    proc.start()
    return proc, done, counted


def stop_load(running: tuple[Any, Any, Any] | None) -> int:
    if running is None:
        return 0
    proc, done, counted = running
    done.set()
    proc.join(60)
    return int(counted.value)


def latencies(name: str, port: int, kills: int, gap: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {kind: [] for kind in LOADS}
    answered: dict[str, list[int]] = {kind: [] for kind in LOADS}
    jitter = random.Random(2026)
    for _ in range(kills):
        for kind, load in LOADS.items():
            time.sleep(gap + jitter.random())
            running = start_load(kind, port)
            if load is not None:
                time.sleep(1.0)  # the load is under way
            (pid,) = find(name)
            before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
            killed = time.monotonic()
            os.kill(pid, 9)
            back = wait_new(name, pid, 30.0, before)
            out[kind].append((back or killed + 30.0) - killed)
            answered[kind].append(stop_load(running))
    for kind in LOADS:
        if kind == "256 slowloris":
            print(f"  {kind}: a real client's whole reports answered OK meanwhile (median per "
                  f"round): {statistics.median(answered[kind]):.0f}")
        elif kind != "quiet":
            print(f"  {kind}: lines answered per round (median): "
                  f"{statistics.median(answered[kind]):,.0f}")
    return out


def rss_under_flood(daemon: int, port: int, seconds: float) -> None:
    proc = psutil.Process(daemon)
    workers = proc.children()
    before = proc.memory_info().rss
    worker_before = sum(w.memory_info().rss for w in workers)
    running = start_load("malformed flood", port)
    peak = before
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(0.5)
        peak = max(peak, proc.memory_info().rss)
    lines = stop_load(running)
    after = proc.memory_info().rss
    worker_after = sum(w.memory_info().rss for w in proc.children())
    mib = 1 << 20
    print(f"malformed flood for {seconds:.0f}s: {lines:,} lines answered "
          f"({lines / seconds:,.0f}/s)")
    print(f"  zelador RSS {before / mib:.1f} -> {after / mib:.1f} MiB (peak {peak / mib:.1f}, "
          f"growth {(peak - before) / mib:+.1f} MiB); report worker {worker_before / mib:.1f} -> "
          f"{worker_after / mib:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--gap", type=float, default=10.5)  # (the restart backoff resets)
    parser.add_argument("--flood-seconds", type=float, default=55.0)
    parser.add_argument("--only", choices=("latency", "rss"), default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-"))
    layout = Layout(root / "mfe", 1)
    port = free_port()
    daemon = start(root, layout, port)
    try:
        settle(layout)
        time.sleep(1.0)
        if args.only in (None, "latency"):
            got = latencies(layout.names[0], port, args.kills, args.gap)
            quiet = got["quiet"]
            for kind, values in got.items():
                ratio = ("" if kind == "quiet" else
                         f"; ratio to quiet p50 {statistics.median(values) / statistics.median(quiet):.2f}"
                         f", p90 {pct(values, 0.9) / pct(quiet, 0.9):.2f}")
                print(f"kill -> restart, {kind}: p50 {statistics.median(values) * 1000:.1f} ms, "
                      f"p90 {pct(values, 0.9) * 1000:.1f} ms (n={len(values)}){ratio}")
        if args.only in (None, "rss"):
            rss_under_flood(daemon.pid, port, args.flood_seconds)
    finally:
        daemon.terminate()
        daemon.wait()
        layout.kill_all()


if __name__ == "__main__":
    main()
