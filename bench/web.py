"""Web and fleet: how fast /metrics and /api/status answer, whether page traffic slows restarts,
and `zelador fleet` over many terminals.

    .venv/bin/python -m bench.web [--kills 8] [--seconds-per-kill 3] [--terminals 500]

Run as root on an otherwise quiet machine.
1. A zelador with 100 programs and 100 jobs: GET /metrics and /api/status, 200 times each,
   medians (the snapshot is rebuilt at most once a second, so most requests reuse it; the
   p90 includes rebuilds). And the render alone, in-process.
2. kill -> restart latency of a program, interleaved between a quiet daemon and one whose page
   gets 200 requests a second (/ and /api/status in turn) the whole time.
3. `zelador fleet` (the whole CLI process) and the read alone, over `--terminals` terminals in a
   real ZooKeeper (Debian's zookeeper), medians of 5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tests.conftest import wait_for
from tests.zkserver import ZooKeeper, free_port

from bench.supervisors import Layout, kills_of, pct, run_zelador, settle


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return bytes(answer.read())


def timed(url: str, runs: int = 200) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        fetch(url)
        out.append(time.perf_counter() - began)
        time.sleep(0.005)
    return out


def endpoints(root: Path) -> None:
    layout = Layout(root / "big", 100)
    port = free_port()
    jobs = "jobs:\n" + "".join(f"  job{i}: {{every: 1h}}\n" for i in range(100))
    daemon = run_zelador(root / "big-z", layout.zelador_config("10s") + jobs +
                   f'intake: {{listen: off}}\nweb: {{listen: "127.0.0.1:{port}"}}\n')
    try:
        settle(layout, 120)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: fetch(f"{base}/api/status"), 30)
        for path in ("/metrics", "/api/status"):
            values = timed(base + path)
            print(f"GET {path} (100 programs, 100 jobs): p50 {statistics.median(values) * 1000:.2f}"
                  f" ms, p90 {pct(values, 0.9) * 1000:.2f} ms, {len(fetch(base + path)):,} bytes")
        from zelador.web.metrics import Metrics

        snapshot = json.loads(fetch(f"{base}/api/status"))
        metrics = Metrics()
        renders = []
        for _ in range(200):
            began = time.perf_counter()
            metrics.render(snapshot)
            renders.append(time.perf_counter() - began)
        dumps = []
        for _ in range(200):
            began = time.perf_counter()
            json.dumps(snapshot)
            dumps.append(time.perf_counter() - began)
        print(f"  the render alone: /metrics {statistics.median(renders) * 1000:.2f} ms, "
              f"/api/status JSON {statistics.median(dumps) * 1000:.2f} ms (medians)")
    finally:
        daemon.terminate()
        daemon.wait()
        layout.kill_all()


def traffic(root: Path, kills: int, gap: float) -> None:
    quiet_layout, busy_layout = Layout(root / "q", 1), Layout(root / "b", 1)
    qport, bport = free_port(), free_port()
    quiet = run_zelador(root / "q-z", quiet_layout.zelador_config("10s") +
                  f'web: {{listen: "127.0.0.1:{qport}"}}\n')
    busy = run_zelador(root / "b-z", busy_layout.zelador_config("10s") +
                 f'web: {{listen: "127.0.0.1:{bport}"}}\n')
    stop = threading.Event()
    served = [0]

    def client() -> None:
        urls = [f"http://127.0.0.1:{bport}/", f"http://127.0.0.1:{bport}/api/status"]
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                fetch(urls[served[0] % 2])
                served[0] += 1
            except OSError:
                pass
            next_at += 1 / 200
            time.sleep(max(0.0, next_at - time.monotonic()))

    try:
        settle(quiet_layout)
        settle(busy_layout)
        wait_for(lambda: fetch(f"http://127.0.0.1:{bport}/api/status"), 30)
        thread = threading.Thread(target=client, daemon=True)
        began = time.monotonic()
        thread.start()
        out = kills_of([quiet_layout.names[0], busy_layout.names[0]], kills, gap)
        stop.set()
        thread.join()
        rate = served[0] / (time.monotonic() - began)
        a, b = out[quiet_layout.names[0]], out[busy_layout.names[0]]
        for label, values in (("quiet", a), (f"page at {rate:.0f} requests/s", b)):
            print(f"kill -> restart, {label}: p50 {statistics.median(values) * 1000:.1f} ms, "
                  f"p90 {pct(values, 0.9) * 1000:.1f} ms (n={len(values)})")
        print(f"  ratio: p50 {statistics.median(b) / statistics.median(a):.2f}, "
              f"p90 {pct(b, 0.9) / pct(a, 0.9):.2f}")
    finally:
        stop.set()
        for daemon in (quiet, busy):
            daemon.terminate()
            daemon.wait()
        quiet_layout.kill_all()
        busy_layout.kill_all()


def fleet(root: Path, terminals: int) -> None:
    from kazoo.client import KazooClient

    from zelador.fleet.zookeeper import read_fleet

    zk = ZooKeeper(root / "zk").start()
    try:
        client = KazooClient(hosts=zk.hosts)
        client.start()
        doc = {"summary": "2/2 up; 0 restarts", "programs": {"comunicador": "RUNNING",
                                                            "monitor": "RUNNING"},
               "down": [], "jobs": {}, "problems": [], "version": "bench", "updated_at": 0}
        for i in range(terminals):
            client.create(f"/zelador/hosts/pos-{i:04d}", json.dumps(doc).encode(), makepath=True)
            client.create(f"/zelador/known/pos-{i:04d}", b"", makepath=True)
        client.stop()
        cli, reads = [], []
        for _ in range(5):
            began = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "zelador", "fleet", "--zookeeper",
                                   zk.hosts], capture_output=True, text=True)
            cli.append(time.perf_counter() - began)
            assert f"{terminals} terminals" in done.stdout, done.stdout[-300:] + done.stderr
            began = time.perf_counter()
            read_fleet(zk.hosts, "/zelador")
            reads.append(time.perf_counter() - began)
        print(f"zelador fleet over {terminals} terminals: CLI process {statistics.median(cli):.2f}"
              f" s, the read alone {statistics.median(reads) * 1000:.0f} ms (medians of 5)")
    finally:
        zk.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--gap", type=float, default=10.5)
    parser.add_argument("--terminals", type=int, default=500)
    parser.add_argument("--only", choices=("endpoints", "traffic", "fleet"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-"))
    if args.only in (None, "endpoints"):
        endpoints(root)
    if args.only in (None, "fleet"):
        fleet(root, args.terminals)
    if args.only in (None, "traffic"):
        traffic(root, args.kills, args.gap)


if __name__ == "__main__":
    main()
