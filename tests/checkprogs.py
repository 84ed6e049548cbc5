"""Stand-in programs for the check tests, run as `python3 tests/checkprogs.py KIND TAG [PORT]`
(TAG makes each test's processes its own): a server that can be made to hang while staying
alive, a memory leaker, a CPU burner, an fd opener."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(port: int, deaf: bool = True) -> None:
    """HTTP on `port`. SIGUSR1: answers nothing any more (alive, port open). SIGUSR2: the
    listening socket is closed (alive, port dead). SIGTERM is ignored, as hung daemons do
    (`serve-term`: it is not)."""
    hang = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if hang.is_set():
                time.sleep(3600)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok\n")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if deaf:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, lambda *_: hang.set())
    signal.signal(signal.SIGUSR2, lambda *_: server.socket.close())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        time.sleep(3600)


def leak() -> None:
    hoard = []
    while True:
        hoard.append(bytearray(4 * 1024 * 1024))
        for page in range(0, len(hoard[-1]), 4096):
            hoard[-1][page] = 1  # touch it: RSS, not just address space
        time.sleep(0.1)


def burn() -> None:
    while True:
        pass


def fds() -> None:
    kept = [os.open(os.devnull, os.O_RDONLY) for _ in range(300)]
    while kept:
        time.sleep(3600)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind in ("serve", "serve-term"):
        serve(int(sys.argv[3]), deaf=kind == "serve")
    else:
        {"leak": leak, "burn": burn, "fds": fds}[kind]()
    socket.gethostname()
