"""The status page in a real browser (Debian's chromium, headless): the rendered DOM shows the
program RUNNING, and after a kill its restarts count grown; a phone-sized screenshot is saved
in the test's folder."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Mfe, Zelador, pids_named, wait_for

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def browse(url: str, *more: str) -> str:
    assert CHROMIUM is not None
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=4000", *more, url],
                          capture_output=True, text=True, timeout=120)
    return done.stdout


def program_row(dom: str, name: str) -> list[str]:
    for row in re.findall(r"<tr>(.*?)</tr>", dom):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        if cells and cells[0] == name:
            return cells
    return []


def test_the_page_in_a_browser_follows_a_kill(tmp_path: Path, mfe: Mfe) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    zel = Zelador(tmp_path, mfe.config(defaults=True, monitor=False) +
                  f'web: {{listen: "127.0.0.1:{port}"}}\n').start()
    try:
        zel.wait_event("started", "comunicador")
        row = program_row(browse(url, "--dump-dom"), "comunicador")
        assert row[1] == "RUNNING" and row[4] == "0", row  # name, state, pid, uptime, restarts
        (pid,) = pids_named(mfe.com)
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("started", "comunicador", count=2)
        row = wait_for(lambda: (lambda r: r if r and r[4] == "1" else None)(
            program_row(browse(url, "--dump-dom"), "comunicador")), 30, "restarts 1 on the page")
        assert row[1] == "RUNNING"
        shot = tmp_path / "status-page.png"
        browse(url, "--window-size=412,915", f"--screenshot={shot}")
        assert shot.stat().st_size > 5000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        zel.stop()
