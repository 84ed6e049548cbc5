"""README's demo command, as a newcomer runs it: it supervises the stand-in MFE, a killed
Comunicador comes back, a failed job reaches the demo's alert channel (alerts.log), Ctrl-C ends
zelador and leaves the programs running."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import free_port, pids_named, wait_for, with_suppress_kill


def test_the_demo_supervises_reports_and_alerts(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    log = tmp_path / "demo.log"
    sock = str(folder / "run" / "control.sock")
    web, intake = free_port(), free_port()  # not the defaults: they may be taken
    with open(log, "wb") as err:
        demo = subprocess.Popen([sys.executable, "-m", "zelador", "demo", "--dir", str(folder),
                                 "--web-listen", f"127.0.0.1:{web}"], stdout=err, stderr=err,
                                env={**os.environ, "ZELADOR_DEMO_INTAKE": f"127.0.0.1:{intake}"})
    try:
        wait_for(lambda: "watching 2 programs" in log.read_text(), 20, "the demo ready")
        said = log.read_text()
        assert "tail -f" in said  # it says how to see the alerts
        assert f"http://127.0.0.1:{web}/" in said and f"/dev/tcp/127.0.0.1/{intake};" in said
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/api/status", timeout=10) as page:
            assert b"comunicador" in page.read()
        with socket.create_connection(("127.0.0.1", intake), timeout=10) as conn:
            conn.sendall(b"#id=25;state=OK;name=fechamento\n")
            assert conn.makefile().readline().strip() == "OK"
        (com,) = wait_for(lambda: pids_named("Comunicador") or None, 10, "Comunicador")
        os.kill(com, signal.SIGKILL)
        wait_for(lambda: [p for p in pids_named("Comunicador") if p != com], 10, "a new one")
        failed = subprocess.run([sys.executable, "-m", "zelador", "exec", "backup", "--socket",
                                 sock, "--", "sh", "-c", "echo saved; exit 1"],
                                capture_output=True, text=True, timeout=30)
        assert failed.returncode == 1 and "saved" in failed.stdout
        alerts = folder / "alerts.log"
        wait_for(lambda: alerts.exists() and "backup failed" in alerts.read_text(), 20,
                 "the alert in alerts.log")
        # the demo logs to this terminal: its alerts point at its history, not at journald
        text = alerts.read_text()
        assert f"zelador history backup --state-dir {folder}/state" in text, text
        assert "journalctl" not in text
        demo.send_signal(signal.SIGINT)
        assert demo.wait(20) == 0
        assert pids_named("Comunicador")  # left running, as always
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for name in ("Comunicador", "Monitor"):
            for pid in pids_named(name):
                with_suppress_kill(pid)
