"""Jobs: reports per second on loopback, `zelador history` on a big store, restarts under a flood.

    .venv/bin/python -m bench.jobs [--seconds 10] [--clients 4] [--rows 1000000] [--kills 12]

Run as root on an otherwise quiet machine. One zelador (the shipped restart policy) watches a
stand-in Comunicador and has jobs; its intake listens on a free loopback port.

1. Reports accepted per second: `--clients` processes each open a connection per report
   (`name=...;state=OK`, wait for `OK`, close) for `--seconds` (bench/flood.c, compiled with cc
   if there is one; Python clients otherwise); then one connection pipelining 200,000 lines.
   The clients share the machine's cores with zelador, so this is a floor; zelador's own CPU
   per report (the daemon and its report worker) is printed too.
2. `zelador history --since 1d` (the whole CLI process, median of 7) over a store of `--rows`
   events spread over 90 days, and the query alone in-process.
3. kill -> restart latency of Comunicador, idle and while the intake is flooded (3 client
   processes at nice 19, connection per report, from 1 s before the kill to 2 s after),
   interleaved (idle, flooded, idle, ...) so both see the same machine; medians, p90, ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from bench.supervisors import Layout, find, pct, settle, wait_new
from zelador.events import event
from zelador.store.history import SCHEMA, read_events, write_rows

JOBS = "jobs:\n  nightly: {id: 25, schedule: \"30 2 * * *\"}\n  quick: {every: 1h}\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(root: Path, layout: Layout, port: int) -> subprocess.Popen[bytes]:
    config = root / "zelador.yaml"
    config.write_text(layout.zelador_config("10s") + JOBS + f'intake: {{listen: "127.0.0.1:{port}"}}\n')
    return subprocess.Popen([sys.executable, "-m", "zelador", "run", "-c", str(config),
                             "--runtime-dir", str(root / "run"), "--log-target", "stderr",
                             "--logs-dir", str(root / "logs"), "--state-dir", str(root / "state"),
                             "--scopes", "no"], stderr=open(root / "zelador.log", "wb"))


def flood_binary(root: Path) -> str | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    out = root / "flood"
    done = subprocess.run([cc, "-O2", "-o", str(out), str(Path(__file__).with_name("flood.c"))],
                          capture_output=True)
    return str(out) if done.returncode == 0 else None


def connection_rate(port: int, clients: int, seconds: float, flood_exe: str | None) -> float:
    if flood_exe is not None:
        done = subprocess.run([flood_exe, str(port), str(seconds), str(clients),
                               "#id=25;state=OK;name=nightly\n"], capture_output=True, text=True,
                              check=True)
        return int(done.stdout) / seconds
    counts: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    until = time.monotonic() + seconds
    procs = [multiprocessing.Process(target=flood, args=(port, until, counts, 0))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    total = sum(counts.get() for _ in procs)
    for proc in procs:
        proc.join()
    return total / seconds


def pipelined_rate(port: int, lines: int = 200_000) -> float:
    payload = b"name=quick;state=OK\n" * lines
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        began = time.monotonic()
        writer = threading.Thread(target=conn.sendall, args=(payload,))
        writer.start()
        got = 0
        while got < lines:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            got += chunk.count(b"\n")
        writer.join()
        took = time.monotonic() - began
    return got / took


def big_store(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    now = time.time()
    rng = random.Random(1)
    kinds = ("exited", "restarting", "started", "job_ok", "job_failed")
    step = 100_000
    for start in range(0, rows, step):
        batch = []
        for i in range(start, min(rows, start + step)):
            ts = now - 90 * 86400 * (1 - i / rows)  # oldest first, the newest now
            kind = rng.choice(kinds)
            batch.append((ts, event(kind, f"comunicador {kind} (row {i})", subject="comunicador",
                                    pid=1000 + i % 30000)))
        write_rows(conn, batch)
    conn.close()


def history_times(state: Path, runs: int = 7) -> tuple[float, float, int]:
    cli, query = [], []
    for _ in range(runs):
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "zelador", "history", "--since", "1d", "--state-dir",
                        str(state)], stdout=subprocess.DEVNULL, check=True)
        cli.append(time.monotonic() - began)
        began = time.monotonic()
        found = read_events(str(state / "history.db"), since=time.time() - 86400, limit=None,
                            fields=False)
        query.append(time.monotonic() - began)
    return statistics.median(cli), statistics.median(query), len(found)


def flood(port: int, until: float, counts: multiprocessing.Queue,  # type: ignore[type-arg]
          nice: int = 19) -> None:
    """One client, a connection per report until `until`; puts how many were answered OK.
    Flooding during the kills it runs at nice 19: it stands for other machines on the network,
    whose CPU is not the terminal's; at nice 0 on these 2 cores it would measure CPU sharing with
    the load generator rather than what a flood of reports costs zelador."""
    os.nice(nice)
    line = b"name=quick;state=OK\n"
    done = 0
    while time.monotonic() < until:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(line)
                if conn.recv(16) == b"OK\n":
                    done += 1
        except OSError:
            pass
    counts.put(done)


def restart_latencies(name: str, port: int, kills: int, gap: float) -> tuple[list[float], list[float]]:
    idle: list[float] = []
    flooded: list[float] = []
    rates: list[float] = []
    jitter = random.Random(2026)
    for i in range(2 * kills):
        loud = i % 2 == 1
        time.sleep(gap + jitter.random())
        procs: list[multiprocessing.Process] = []
        counts: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        if loud:
            until = time.monotonic() + 3.0
            procs = [multiprocessing.Process(target=flood, args=(port, until, counts))
                     for _ in range(3)]
            for proc in procs:
                proc.start()
            time.sleep(1.0)  # the flood is under way
        (pid,) = find(name)
        before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        killed = time.monotonic()
        os.kill(pid, 9)
        back = wait_new(name, pid, 30.0, before)
        (flooded if loud else idle).append((back or killed + 30.0) - killed)
        if procs:
            rates.append(sum(counts.get() for _ in procs) / 3.0)
        for proc in procs:
            proc.join()
    print(f"  flood during the kills: {statistics.median(rates):,.0f} reports/s accepted (median)")
    return idle, flooded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--gap", type=float, default=10.5)
    parser.add_argument("--only", choices=("rates", "latency", "history"), default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-"))
    layout = Layout(root / "mfe", 1)
    port = free_port()
    daemon = start(root, layout, port)
    try:
        settle(layout)
        time.sleep(1.0)
        if args.only in (None, "rates"):
            report_rates(root, daemon, port, args)
        if args.only in (None, "latency"):
            latency(layout, port, args)
    finally:
        daemon.terminate()
        daemon.wait()
        layout.kill_all()
    if args.only in (None, "history"):
        big_history(root, args.rows)


def report_rates(root: Path, daemon: subprocess.Popen[bytes], port: int,
                 args: argparse.Namespace) -> None:
    exe = flood_binary(root)
    family = [psutil.Process(daemon.pid), *psutil.Process(daemon.pid).children()]
    before = sum(sum(p.cpu_times()[:2]) for p in family)
    rate = connection_rate(port, args.clients, args.seconds, exe)
    used = sum(sum(p.cpu_times()[:2]) for p in family) - before
    client = "C" if exe else "Python"
    print(f"reports, one per connection ({args.clients} {client} client processes): "
          f"{rate:,.0f}/s; zelador's CPU per report (daemon + report worker): "
          f"{used / (rate * args.seconds) * 1e6:.0f} us")
    print(f"reports, pipelined on one connection: {pipelined_rate(port):,.0f}/s")


def latency(layout: Layout, port: int, args: argparse.Namespace) -> None:
    idle, flooded = restart_latencies(layout.names[0], port, args.kills, args.gap)
    for label, values in (("idle", idle), ("intake flooded", flooded)):
        print(f"kill -> restart, {label}: p50 {statistics.median(values) * 1000:.1f} ms, "
              f"p90 {pct(values, 0.9) * 1000:.1f} ms (n={len(values)})")
    print(f"  ratio flooded/idle: p50 {statistics.median(flooded) / statistics.median(idle):.2f}"
          f", p90 {pct(flooded, 0.9) / pct(idle, 0.9):.2f}")


def big_history(root: Path, rows: int) -> None:
    store = root / "big"
    store.mkdir()
    began = time.monotonic()
    big_store(store / "history.db", rows)
    print(f"history store of {rows:,} rows over 90 days built in {time.monotonic() - began:.0f}s")
    cli, query, found = history_times(store)
    print(f"zelador history --since 1d ({found:,} rows): CLI process {cli * 1000:.0f} ms median, "
          f"the query alone {query * 1000:.0f} ms")


if __name__ == "__main__":
    main()
