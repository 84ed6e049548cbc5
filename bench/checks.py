"""Checks: what sampling costs, and that probes never slow supervision.

    .venv/bin/python -m bench.checks [--programs 100] [--seconds 30] [--kills 8] [--hangs 5]

Run as root on an otherwise quiet machine.
1. Sampling cost: two zelador daemons side by side, each watching `--programs` stand-in programs;
   one has a memory and a cpu rule on every program sampled every 1 s, the other none. zelador's
   CPU (all threads) over `--seconds`, as % of one core; the difference is the sampling.
2. One system sample (memory, swap, load, cpu, disk and inodes of /, processes), in-process,
   median of 500.
3. kill -> restart latency of a program, interleaved between a daemon with no checks and one
   with 50 HTTP checks every 1 s against a server that accepts and never answers (timeout 5 s).
4. A hung program (alive, its port closed) with `health: {tcp, every: 1s, timeout: 1s, fails: 2,
   start_after: 2s}`: time from the hang to its new instance, against every*fails+timeout+1s.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from tests.conftest import free_port, wait_for

from bench.supervisors import Layout, cpu_ns, kills_of, pct, run_zelador, settle
from zelador.checks.samplers import Sampler
from zelador.config.model import Threshold

PROGS = Path(__file__).parents[1] / "tests" / "checkprogs.py"


def with_rules(layout: Layout) -> str:
    text = layout.zelador_config("10s")
    rules = "    resources: {every: 1s, memory: {above: 10GB}, cpu: {above: 1000%}}"
    return "\n".join(line + ("\n" + rules if line.strip().startswith("start:") else "")
                     for line in text.splitlines()) + "\n"


def sampling_cost(root: Path, programs: int, seconds: float) -> None:
    bare_layout, ruled_layout = Layout(root / "bare", programs), Layout(root / "ruled", programs)
    bare = run_zelador(root / "a", bare_layout.zelador_config("10s"))
    ruled = run_zelador(root / "b", with_rules(ruled_layout))
    try:
        settle(bare_layout, 120)
        settle(ruled_layout, 120)
        time.sleep(3.0)
        before = {d.pid: cpu_ns(d.pid) for d in (bare, ruled)}
        time.sleep(seconds)
        used = {d.pid: (cpu_ns(d.pid) - before[d.pid]) / 1e9 / seconds * 100 for d in (bare, ruled)}
        print(f"{programs} programs, CPU of zelador as % of one core over {seconds:.0f}s: "
              f"no rules {used[bare.pid]:.2f}%, memory+cpu rules sampled every 1s "
              f"{used[ruled.pid]:.2f}% (sampling: {used[ruled.pid] - used[bare.pid]:+.2f}%)")
    finally:
        for daemon in (bare, ruled):
            daemon.terminate()
            daemon.wait()
        bare_layout.kill_all()
        ruled_layout.kill_all()


def system_sample() -> None:
    rules = [Threshold("m", "memory", 1), Threshold("s", "swap", 1), Threshold("l", "load", 1),
             Threshold("c", "cpu", 1), Threshold("d", "disk", 1, path="/"),
             Threshold("i", "inodes", 1, path="/"), Threshold("p", "processes", 1)]
    sampler = Sampler()
    sampler.system(rules)
    times = []
    for _ in range(500):
        began = time.perf_counter()
        sampler.system(rules)
        times.append(time.perf_counter() - began)
    print(f"one system sample (7 figures incl. the process count, {len(psutil.pids())} "
          f"processes): median {statistics.median(times) * 1000:.2f} ms, p90 "
          f"{pct(times, 0.9) * 1000:.2f} ms")


def hanging_server() -> tuple[socket.socket, str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)  # accepts (the kernel does) and never answers
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}/"


def restarts_beside_checks(root: Path, kills: int, gap: float) -> None:
    listener, url = hanging_server()
    quiet_layout, busy_layout = Layout(root / "q", 1), Layout(root / "h", 1)
    checks = "checks:\n" + "".join(f'  c{i}: {{every: 1s, http: {{url: "{url}", timeout: 5s}}}}\n'
                                   for i in range(50))
    quiet = run_zelador(root / "q-z", quiet_layout.zelador_config("10s"))
    busy = run_zelador(root / "h-z", busy_layout.zelador_config("10s") + checks)
    try:
        settle(quiet_layout)
        settle(busy_layout)
        time.sleep(2.0)
        out = kills_of([quiet_layout.names[0], busy_layout.names[0]], kills, gap)
        a, b = out[quiet_layout.names[0]], out[busy_layout.names[0]]
        for label, values in (("no checks", a), ("50 HTTP checks on a hanging server", b)):
            print(f"kill -> restart, {label}: p50 {statistics.median(values) * 1000:.1f} ms, "
                  f"p90 {pct(values, 0.9) * 1000:.1f} ms (n={len(values)})")
        print(f"  ratio: p50 {statistics.median(b) / statistics.median(a):.2f}, "
              f"p90 {pct(b, 0.9) / pct(a, 0.9):.2f}")
    finally:
        for daemon in (quiet, busy):
            daemon.terminate()
            daemon.wait()
        quiet_layout.kill_all()
        busy_layout.kill_all()
        listener.close()


def tagged(tag: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if f"checkprogs.py serve-term {tag}" in " ".join(p.info["cmdline"] or [])]


def hung_program(root: Path, hangs: int) -> None:
    port, tag = free_port(), f"b{os.getpid()}"
    config = f"""programs:
  comunicador:
    match: {{cmdline: "checkprogs.py serve-term {tag}"}}
    start: "nohup {sys.executable} {PROGS} serve-term {tag} {port} >/dev/null 2>&1 &"
    shell: true
    health: {{tcp: "127.0.0.1:{port}", every: 1s, timeout: 1s, fails: 2, start_after: 2s}}
"""
    daemon = run_zelador(root / "hung", config)
    took = []
    try:
        for _ in range(hangs):
            pid = wait_for(lambda: (tagged(tag) or [None])[0], 30, every=0.002)
            time.sleep(3.5)  # past start_after, healthy
            hung = time.monotonic()
            os.kill(pid, signal.SIGUSR2)  # the port closes; the process lives on
            wait_for(lambda p=pid: [q for q in tagged(tag) if q != p], 30, every=0.002)
            took.append(time.monotonic() - hung)
        bound = 1 * 2 + 1 + 1
        print(f"hung program (port closed, alive) -> new instance: median "
              f"{statistics.median(took):.2f}s, max {max(took):.2f}s (n={len(took)}); "
              f"bound every*fails+timeout+1s = {bound}s")
    finally:
        daemon.terminate()
        daemon.wait()
        for pid in tagged(tag):
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--programs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--gap", type=float, default=10.5)
    parser.add_argument("--hangs", type=int, default=5)
    parser.add_argument("--only", choices=("cost", "system", "restarts", "hung"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-"))
    if args.only in (None, "system"):
        system_sample()
    if args.only in (None, "hung"):
        hung_program(root, args.hangs)
    if args.only in (None, "cost"):
        sampling_cost(root, args.programs, args.seconds)
    if args.only in (None, "restarts"):
        restarts_beside_checks(root, args.kills, args.gap)


if __name__ == "__main__":
    main()
