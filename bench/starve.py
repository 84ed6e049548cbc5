"""Nothing waits for anything else: checks beside hung checks, `zelador status` beside pollers.

    .venv/bin/python -m bench.starve [--rounds 10] [--polls 300]

1. A canary HTTP check (every 1s, timeout 1s) whose target goes down: the time from the target
   closing to `check_failed`, in a daemon with the canary alone and in one with 50 more HTTP
   checks hanging on a server that never answers (timeout 60s), rounds interleaved. Before
   issue 19 the 50 held all 8 shared workers: the canary waited its turn behind them (357 s
   measured once with this script against the old code).
2. `zelador status` latency (one request on the control socket, read to its end) on a quiet
   daemon, then while 50 clients in another process poll it as fast as they can (before, the
   listen backlog of 8 made such clients fail with EAGAIN).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import free_port, wait_for

from bench.supervisors import Layout, pct, run_zelador, settle
from zelador.errors import ZeladorError
from zelador.runtime.control import ask


class Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Target:
    """An HTTP server on a fixed loopback port that can be taken down and brought back."""

    def __init__(self) -> None:
        self.port = free_port()
        self._thread: threading.Thread | None = None
        self.up()

    def up(self) -> None:
        if self._thread is None:
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Ok)
            self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            self._thread.start()

    def down(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self.server.server_close()
            self._thread = None


def canary_state(sock: str) -> str | None:
    try:
        checks = ask(sock, {"cmd": "checks"}, timeout=30)["checks"]
    except ZeladorError:
        return None
    return next((c["state"] for c in checks if c["name"] == "canary"), None)


def canary(root: Path, rounds: int) -> None:
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(1024)  # the kernel accepts, nobody answers
    hung_url = f"http://127.0.0.1:{hang.getsockname()[1]}/"
    targets = {"alone": Target(), "beside 50 hung checks": Target()}
    daemons = {}
    for label, target in targets.items():
        config = (f'checks:\n  canary: {{every: 1s, http: {{url: "http://127.0.0.1:'
                  f'{target.port}/", timeout: 1s}}}}\n')
        if label != "alone":
            config += "".join(f'  hung{i}: {{every: 1s, http: {{url: "{hung_url}", '
                              'timeout: 60s}}\n' for i in range(50))
        config += "jobs: {backup: {every: 1h}}\nintake: {listen: off}\n"
        daemons[label] = (run_zelador(root / label.replace(" ", "-"), config),
                          str(root / label.replace(" ", "-") / "run" / "control.sock"))
    took: dict[str, list[float]] = {label: [] for label in targets}
    jitter = random.Random(19)
    try:
        time.sleep(3.0)  # the hung checks are hung by now
        for _ in range(rounds):
            for label, target in targets.items():
                sock = daemons[label][1]
                target.up()
                wait_for(lambda s=sock: canary_state(s) == "OK", 120, "the canary healthy")
                time.sleep(jitter.random())  # any moment within the canary's 1 s interval
                target.down()
                began = time.monotonic()
                wait_for(lambda s=sock: canary_state(s) == "FAILING", 120, "the canary failed",
                         every=0.005)
                took[label].append(time.monotonic() - began)
        for label, values in took.items():
            print(f"canary (every 1s, timeout 1s) time to fail, {label}: median "
                  f"{statistics.median(values):.2f} s, max {max(values):.2f} s (n={len(values)})")
        alone, beside = (statistics.median(v) for v in took.values())
        print(f"  ratio beside/alone: {beside / alone:.2f} (before issue 19: 357 s beside, once)")
    finally:
        for daemon, _ in daemons.values():
            daemon.terminate()
            daemon.wait()
        for target in targets.values():
            target.down()
        hang.close()


POLLER = """
import socket, sys, threading, time
path, seconds = sys.argv[1], float(sys.argv[2])
stop = time.monotonic() + seconds
counts = {"ok": 0, "failed": 0}
def poll():
    while time.monotonic() < stop:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(path)
                s.sendall(b'{"cmd": "status"}\\n')
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            counts["ok" if data.endswith(b"\\n") else "failed"] += 1
        except OSError:
            counts["failed"] += 1
threads = [threading.Thread(target=poll) for _ in range(50)]
for t in threads: t.start()
for t in threads: t.join()
print(counts["ok"], counts["failed"])
"""


def status_latency(root: Path, polls: int) -> None:
    layout = Layout(root / "mfe", 2)
    daemon = run_zelador(root / "z", layout.zelador_config("10s"))
    sock = str(root / "z" / "run" / "control.sock")
    try:
        settle(layout)
        wait_for(lambda: Path(sock).exists(), 30, "the socket")

        def sample() -> tuple[list[float], int]:
            times, failed = [], 0
            for _ in range(polls):
                began = time.perf_counter()
                try:
                    ask(sock, {"cmd": "status"}, timeout=30)
                except ZeladorError:
                    failed += 1
                    continue
                times.append(time.perf_counter() - began)
            return times, failed

        quiet, quiet_failed = sample()
        pollers = subprocess.Popen([sys.executable, "-c", POLLER, sock, "3600"],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)
        busy, busy_failed = sample()
        pollers.terminate()
        pollers.wait()
        for label, values, failed in (("quiet", quiet, quiet_failed),
                                      ("beside 50 pollers", busy, busy_failed)):
            print(f"zelador status round trip, {label}: median "
                  f"{statistics.median(values) * 1000:.2f} ms, p90 {pct(values, 0.9) * 1000:.2f} "
                  f"ms, failed {failed} of {polls}")
        print(f"  ratio p50 {statistics.median(busy) / statistics.median(quiet):.1f}")
    finally:
        daemon.terminate()
        daemon.wait()
        layout.kill_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--polls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        canary(Path(folder), args.rounds)
        status_latency(Path(folder), args.polls)


if __name__ == "__main__":
    main()
