"""A stand-in SEFAZ-CE MFE: `Comunicador` and `Monitor` daemons and vendor-style start scripts.

The daemons are copies of sleep(1) under the vendor's process names; the scripts background them
with `nohup ... &` and exit at once, as the real `runcco-ser.sh` and `runcco-mon.sh` do. Tests and
the benchmark use the same layout.
"""

from __future__ import annotations

import os
import shutil

SCRIPT = """#!/bin/sh
# Stand-in for the SEFAZ-CE MFE vendor script: start {name} in the background and return.
cd "$(dirname "$0")" || exit 1
nohup ./{name} infinity > /dev/null 2>&1 &
"""

# A vendor launcher that never calls wait(): the daemon's parent stays alive and never reaps it,
# so a killed daemon lingers as a zombie (for ever, here). Tests use it: the easy world, where
# PID 1 or a subreaper reaps at once, hides bugs.
SCRIPT_NO_REAP = """#!/bin/sh
# Stand-in vendor script whose launcher never reaps: {name} runs under {holder}, which never waits.
cd "$(dirname "$0")" || exit 1
nohup sh -c './{name} infinity & exec ./{holder} infinity' > /dev/null 2>&1 &
"""


def holder_name(name: str) -> str:
    """The never-reaping launcher's process name for daemon `name` (<= 15 chars, like comm)."""
    return f"{name[:11]}-hld"

CONFIG = """# zelador demo: a stand-in for the SEFAZ-CE MFE on a point-of-sale terminal.
interval: {interval}
control:
  socket: {root}/run/control.sock
programs:
  comunicador:
    match: {{name: Comunicador}}
    start: {bin}/runcco-ser.sh
    start_timeout: 10s
    restart: {{delay: 0s, max_delay: 1m, burst: 20 in 1m, then: retry every 1m}}
  monitor:
    match: {{name: Monitor}}
    start: {bin}/runcco-mon.sh
    start_timeout: 10s
    part_of: comunicador
jobs:  # seed 002's nightly closing, reported over TCP; and a job zelador exec reports
  fechamento: {{id: 25, schedule: "30 2 * * *", timezone: America/Fortaleza, max_runtime: 20m,
               grace: 15m}}
  backup: {{every: 1h, max_runtime: 5m}}
web: {{listen: "{web}"}}  # the status page and /metrics
intake: {{listen: "{intake}"}}  # job reports over TCP
alerts:  # to a file here; on a terminal: telegram, email, a webhook (docs/alerts.md)
  group_wait: 2s
  flapping: 3 in 5m
  channels:
    screen: {{command: [{root}/alert-to-file]}}
"""

ALERT_SCRIPT = """#!/usr/bin/env python3
# The demo's alert channel: each message zelador sends is appended to alerts.log as text.
# The demo logs to its terminal, not to journald: the messages' `journalctl -u zelador ...`
# hint becomes the demo's own history, where the same events are.
import json, re, sys
text = json.load(sys.stdin)["text"]
text = re.sub(r'journalctl -u zelador ZELADOR_[A-Z]+=(\\S+) --since "[^"]*"',
              r"zelador history \\1 --state-dir {state}", text)
with open({log!r}, "a", encoding="utf-8") as out:
    out.write(text + "\\n")
"""


def lay_out_mfe(root: str, names: tuple[str, ...] = ("Comunicador", "Monitor"),
                sleep: str | None = None, reaping: bool = True) -> str:
    """Create ROOT/opt/sefaz/cco/bin with a daemon and a `runcco-*.sh` per name; return bin.

    The daemons are copies of `sleep` (default: this machine's sleep(1); a container's own when
    laying out inside its root, so the binary fits that system's libc).
    """
    folder = os.path.join(root, "opt", "sefaz", "cco", "bin")
    os.makedirs(folder, mode=0o755, exist_ok=True)
    for path in _parents(root, folder):
        os.chmod(path, 0o755)
    sleep = sleep or shutil.which("sleep") or "/bin/sleep"
    for name in names:
        binary = os.path.join(folder, name)
        if not os.path.exists(binary):
            shutil.copy(sleep, binary)
        os.chmod(binary, 0o755)
        script = os.path.join(folder, script_name(name))
        text = SCRIPT.format(name=name)
        if not reaping:
            holder = os.path.join(folder, holder_name(name))
            shutil.copy(sleep, holder)
            os.chmod(holder, 0o755)
            text = SCRIPT_NO_REAP.format(name=name, holder=holder_name(name))
        with open(script, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(script, 0o755)
    return folder


def script_name(name: str) -> str:
    short = {"Comunicador": "ser", "Monitor": "mon"}.get(name, name.lower())
    return f"runcco-{short}.sh"


def lay_out(root: str, interval: str = "10s", *, web: str = "127.0.0.1:9813",
            intake: str = "127.0.0.1:2020", state: str = "") -> str:
    """The whole demo: the stand-in MFE and a zelador.yaml for it; return the config's path.
    `web` and `intake`: where the status page and the report port listen; `state`: the state
    folder, whose history the alerts point at."""
    root = os.path.abspath(root)
    folder = lay_out_mfe(root)
    path = os.path.join(root, "zelador.yaml")
    alert = os.path.join(root, "alert-to-file")
    with open(alert, "w", encoding="utf-8") as out:
        out.write(ALERT_SCRIPT.format(log=os.path.join(root, "alerts.log"),
                                      state=state or os.path.join(root, "state")))
    os.chmod(alert, 0o755)
    with open(path, "w", encoding="utf-8") as out:
        out.write(CONFIG.format(root=root, bin=folder, interval=interval, web=web,
                                intake=intake))
    os.chmod(path, 0o644)
    return path


def _parents(root: str, folder: str) -> list[str]:
    out = []
    while len(folder) >= len(root):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out
