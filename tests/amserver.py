"""A throwaway Alertmanager (Debian's prometheus-alertmanager) on loopback, routing every alert
to a webhook receiver of the test's, grouped by alertname and program (as docs/alertmanager.yml)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port, stop_group

ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")


class AlertmanagerServer:
    def __init__(self, folder: Path, webhook: str, *, group_wait: str = "3s") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "alertmanager.yml"
        self.config.write_text(f"""route:
  receiver: hook
  group_by: [alertname, program]
  group_wait: {group_wait}
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "{webhook}"
        send_resolved: true
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> AlertmanagerServer:
        with open(self.folder / "alertmanager.log", "ab") as out:
            self.proc = subprocess.Popen(
                [str(ALERTMANAGER), f"--config.file={self.config}",
                 f"--storage.path={self.folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                 "--log.level=warn"], stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("alertmanager exited: " +
                                   (self.folder / "alertmanager.log").read_text())
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("alertmanager did not start")

    def stop(self) -> None:
        stop_group(self.proc, 10)
        self.proc = None
