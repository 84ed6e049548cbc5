"""Alerts: event -> webhook latency, restarts beside a hung webhook with a backlog, memory.

    .venv/bin/python -m bench.alerts [--samples 100] [--kills 12] [--alerts 10000]

Run as root on an otherwise quiet machine. Two zelador daemons run side by side, each with the
shipped restart policy watching its own stand-in Comunicador and with jobs:
- A ("quiet") alerts to a webhook receiver that answers at once (group_wait 0s);
- B ("loaded") alerts to a webhook that accepts and never answers (timeout 30s), and is given
  1,000 alerts (job failures and recoveries) before its kills, which wait in its outbox.

1. Event -> webhook: a job failure (then its recovery) reported to A over the control socket;
   the time from just before the report to the receiver's arrival of the POST. Median and p90.
2. kill -> restart of A's and B's programs, interleaved (A, B, A, B ...) so both see the same
   machine; medians, p90 and the ratio B/A.
3. A's RSS, one alert at a time (each report waits for its POST): after a warm-up of 5,000
   (SQLite's page caches and the allocator's arenas fill, then stay: see the issue 11 note),
   then every 1,000 of `--alerts`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from tests.alertservers import Receiver
from tests.conftest import wait_for

from bench.supervisors import Layout, kills_of, pct, run_zelador, settle
from zelador.runtime.control import ask

JOBS = "jobs:\n" + "".join(f"  job{i}: {{every: 1h}}\n" for i in range(10)) + \
       "intake: {listen: off}\n"


def start(root: Path, layout: Layout, url: str, timeout: str) -> subprocess.Popen[bytes]:
    return run_zelador(root, layout.zelador_config("10s") + JOBS + f"""alerts:
  group_wait: 0s
  channels:
    hook: {{webhook: {{url: "{url}", timeout: {timeout}}}, rate_limit: 100000 in 1m}}
""")


def report(sock: str, job: str, verb: str) -> None:
    ask(sock, {"cmd": "report", "job": job, "verb": verb, "source": "bench"})


def event_latency(sock: str, receiver: Receiver, samples: int) -> list[float]:
    out = []
    for i in range(samples):
        verb = "fail" if i % 2 == 0 else "ok"
        seen = len(receiver.posts)
        sent = time.time()
        report(sock, "job0", verb)
        wait_for(lambda seen=seen: len(receiver.posts) > seen, 60, every=0.0005)
        out.append(receiver.posts[seen][0] - sent)
        time.sleep(0.02)
    return out


def flood(sock: str, count: int) -> None:
    """`count` alerts: failures and recoveries of ten jobs in turn."""
    for i in range(count):
        job, verb = f"job{(i // 2) % 10}", ("fail" if i % 2 == 0 else "ok")
        report(sock, job, verb)


WARM_UP = 5000


def memory(pid: int, sock: str, receiver: Receiver, count: int) -> None:
    """One alert at a time (each report waits for its POST), RSS sampled every 1,000."""
    proc = psutil.Process(pid)
    samples = []

    def one(i: int) -> None:
        seen = len(receiver.posts)
        report(sock, f"job{(i // 2) % 10}", "fail" if i % 2 == 0 else "ok")
        wait_for(lambda: len(receiver.posts) > seen, 60, every=0.0005)

    at_start = proc.memory_info().rss
    for i in range(WARM_UP):  # caches, the SQLite page caches, the allocator's arenas fill
        one(i)
    began = time.monotonic()
    samples.append(proc.memory_info().rss)
    for i in range(count):
        one(i)
        if (i + 1) % 1000 == 0:
            samples.append(proc.memory_info().rss)
    mib = [f"{s / 2**20:.1f}" for s in samples]
    print(f"RSS every 1,000 alerts over {count:,} ({time.monotonic() - began:.0f}s, one POST "
          f"each): {' '.join(mib)} MiB; growth {(samples[-1] - samples[0]) / 2**20:+.1f} MiB "
          f"(before the {WARM_UP:,} warm-up alerts: {at_start / 2**20:.1f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--gap", type=float, default=10.5)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--only", choices=("latency", "restarts", "memory"), default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-"))
    quiet_rx, hung_rx = Receiver(), Receiver()
    hung_rx.mode = "hang"
    quiet_layout, hung_layout = Layout(root / "mfe-a", 1), Layout(root / "mfe-b", 1)
    quiet = start(root / "a", quiet_layout, quiet_rx.url, "5s")
    hung = start(root / "b", hung_layout, hung_rx.url, "30s")
    sock_a, sock_b = str(root / "a" / "run" / "control.sock"), str(root / "b" / "run" / "control.sock")
    try:
        settle(quiet_layout)
        settle(hung_layout)
        wait_for(lambda: os.path.exists(sock_a) and os.path.exists(sock_b), every=0.0005)
        time.sleep(1.0)
        if args.only in (None, "latency"):
            lat = event_latency(sock_a, quiet_rx, args.samples)
            print(f"event -> webhook POST received (group_wait 0s): p50 "
                  f"{statistics.median(lat) * 1000:.1f} ms, p90 {pct(lat, 0.9) * 1000:.1f} ms "
                  f"(n={len(lat)})")
        if args.only in (None, "restarts"):
            restarts(sock_b, quiet_layout, hung_layout, args)
        if args.only in (None, "memory"):
            memory(quiet.pid, sock_a, quiet_rx, args.alerts)
    finally:
        for daemon in (quiet, hung):
            daemon.terminate()
            daemon.wait()
        quiet_layout.kill_all()
        hung_layout.kill_all()
        quiet_rx.close()
        hung_rx.close()


def restarts(sock_b: str, quiet_layout: Layout, hung_layout: Layout,
             args: argparse.Namespace) -> None:
    flood(sock_b, 1000)
    time.sleep(1.0)
    state = ask(sock_b, {"cmd": "status"})
    print(f"loaded daemon: 1,000 alerts given; its webhook hangs (summary: {state['summary']})")
    out = kills_of([quiet_layout.names[0], hung_layout.names[0]], args.kills, args.gap)
    a, b = out[quiet_layout.names[0]], out[hung_layout.names[0]]
    for label, values in (("quiet", a), ("hung webhook + 1,000 queued", b)):
        print(f"kill -> restart, {label}: p50 {statistics.median(values) * 1000:.1f} ms, "
              f"p90 {pct(values, 0.9) * 1000:.1f} ms (n={len(values)})")
    print(f"  ratio loaded/quiet: p50 {statistics.median(b) / statistics.median(a):.2f}, "
          f"p90 {pct(b, 0.9) / pct(a, 0.9):.2f}")


if __name__ == "__main__":
    main()
