"""README's demo command, as a newcomer runs it: it supervises the stand-in MFE, a killed
Comunicador comes back, a failed job reaches the demo's alert channel (alerts.log), Ctrl-C ends
zelador and leaves the programs running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import pids_named, wait_for, with_suppress_kill


def test_the_demo_supervises_reports_and_alerts(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    log = tmp_path / "demo.log"
    sock = str(folder / "run" / "control.sock")
    with open(log, "wb") as err:
        demo = subprocess.Popen([sys.executable, "-m", "zelador", "demo", "--dir", str(folder)],
                                stdout=err, stderr=err)
    try:
        wait_for(lambda: "watching 2 programs" in log.read_text(), 20, "the demo ready")
        assert "tail -f" in log.read_text()  # it says how to see the alerts
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
