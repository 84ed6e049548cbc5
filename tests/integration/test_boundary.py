"""The error boundary in the real daemon: an input that makes a callback raise costs that
request, never zelador; the part shows as degraded in `zelador status`, /api/status and /metrics
until it works again, and the journal says so once, with the traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import Mfe, Zelador, free_port, pids_named


def send_raw(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        out = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return out
                out += chunk
        except OSError:
            return out


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_poison_request_costs_itself_only(tmp_path: Path, mfe: Mfe) -> None:
    port = free_port()
    zel = Zelador(tmp_path, mfe.config(monitor=False) + "intake: {listen: off}\n"
                  f'web: {{listen: "127.0.0.1:{port}"}}\n').start()
    try:
        zel.wait_event("started", "comunicador")
        deep = b"[" * 15000 + b"]" * 15000 + b"\n"  # RecursionError in json.loads, unless refused
        for _ in range(3):
            send_raw(zel.socket, deep)
        assert zel.proc is not None and zel.proc.poll() is None
        raised = zel.matching("degraded")
        if raised:  # the boundary caught it: one line for three, with the traceback
            # (on stderr, a field's spaces are underscores)
            assert len(raised) == 1 and raised[0]["part"] == "control_request", raised
            assert "RecursionError" in raised[0]["detail"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
                metrics = answer.read().decode()
            assert 'zelador_degraded{part="control request"} 1.0' in metrics
            text = subprocess.run([sys.executable, "-m", "zelador", "status", "--socket",
                                   zel.socket], capture_output=True, text=True).stdout
            assert "degraded: control request: RecursionError" in text
            zel.wait_event("recovered")  # that status request was served cleanly
            assert zel.status()["degraded"] == []
        # no spinning on the dropped connections, and supervision goes on
        before = cpu(zel.proc.pid)
        time.sleep(1.0)  # a measured second, not a wait for a condition
        assert cpu(zel.proc.pid) - before < 0.5
        (pid,) = pids_named(mfe.com)
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("started", "comunicador", count=2)
        assert json.dumps(zel.status())  # answers
    finally:
        zel.stop()


def test_a_dead_history_writer_is_restarted_and_later_events_are_kept(tmp_path: Path,
                                                                      mfe: Mfe) -> None:
    """An exit status SQLite cannot store ended the history's thread for good (issue 19). If the
    input still gets that far, the thread watcher restarts the writer, and what comes after is
    in the history; if it is refused at the door, zelador says so and nothing dies."""
    zel = Zelador(tmp_path, mfe.config(monitor=False) + "jobs: {backup: {every: 1h}}\n"
                  "intake: {listen: off}\n").start()
    try:
        zel.wait_event("started", "comunicador")
        subprocess.run([sys.executable, "-m", "zelador", "report", "backup", "fail",
                        "--exit-code", "99999999999999999999", "--socket", zel.socket],
                       capture_output=True)
        time.sleep(1.5)  # the writer's batch (0.5 s) has been written, or its thread died
        died = [e for e in zel.matching("degraded") if e.get("part") == "history_writer"]
        if died:
            assert "its thread died" in died[0]["message"]
            zel.wait_event("recovered", timeout=15)
        (pid,) = pids_named(mfe.com)
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("started", "comunicador", count=2)

        def exits_in_history() -> int:
            out = subprocess.run([sys.executable, "-m", "zelador", "history", "comunicador",
                                  "--kind", "exited", "--json", "--state-dir",
                                  str(tmp_path / "state")], capture_output=True, text=True)
            return len(json.loads(out.stdout or "[]"))

        from tests.conftest import wait_for

        wait_for(lambda: exits_in_history() >= 1, 15, "the exit recorded in the history")
        assert zel.proc is not None and zel.proc.poll() is None
    finally:
        zel.stop()
