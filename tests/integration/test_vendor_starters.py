"""The vendor's own starters (the MFE driver installs /etc/xdg/autostart/cco-mon.desktop,
cco-ser.service and/or /etc/init.d/cco-ser): found by the start script or the executable they
run, and said, with what will happen, by `zelador validate` and by the daemon at start. A
machine's files are laid out under a root folder (ZELADOR_VENDOR_ROOT)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from zelador.config import starters
from zelador.config.reader import parse_config

CONFIG = """programs:
  comunicador:
    match: {name: Comunicador}
    start: /opt/sefaz/cco/bin/runcco-ser.sh
  monitor:
    match: {name: Monitor}
    start: /opt/sefaz/cco/bin/runcco-mon.sh
    user: session
"""
DESKTOP = """[Desktop Entry]
Type=Application
Name=Monitor CCO
Exec=/opt/sefaz/cco/bin/runcco-mon.sh
X-GNOME-Autostart-enabled=true
"""
UNIT = """[Unit]
Description=CCO
[Service]
Type=forking
ExecStart=/opt/sefaz/cco/Comunicador -d
[Install]
WantedBy=multi-user.target
"""
INIT = """#!/bin/sh
### BEGIN INIT INFO
# Provides: cco-ser
### END INIT INFO
case "$1" in
  start) /opt/sefaz/cco/bin/runcco-ser.sh ;;
esac
"""


def machine(root: Path) -> Path:
    files = {"etc/xdg/autostart/cco-mon.desktop": DESKTOP,
             "etc/systemd/system/cco-ser.service": UNIT,
             "etc/init.d/cco-ser": INIT,
             "etc/xdg/autostart/other.desktop": "[Desktop Entry]\nExec=/usr/bin/xterm\n",
             "lib/systemd/system/zelador.service": "[Service]\nExecStart=/usr/bin/zelador run\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "cco-ser.service").symlink_to("../cco-ser.service")
    return root


def test_the_autostart_the_unit_and_the_init_script_are_found_with_their_lines(
        tmp_path: Path) -> None:
    root = machine(tmp_path / "m")
    config = parse_config(CONFIG, check_files=False)
    found = starters.find(config, str(root))
    assert [(s.program, s.kind, os.path.relpath(s.path, root), s.line) for s in found] == [
        ("monitor", "autostart", "etc/xdg/autostart/cco-mon.desktop", 4),
        ("comunicador", "unit", "etc/systemd/system/cco-ser.service", 5),  # by its executable
        ("comunicador", "init script", "etc/init.d/cco-ser", 6)]  # by its start script
    said = [starters.advice(config, s, str(root)) for s in found]
    assert "waits session_grace (5s) after a login and adopts that copy" in said[0]
    assert "unit cco-ser.service (enabled)" in said[1] and "systemctl disable" in said[1]
    assert "init script cco-ser (not enabled)" in said[2] and "systemd 260" in said[2]


def test_validate_says_what_will_happen(tmp_path: Path) -> None:
    root = machine(tmp_path / "m")
    config = tmp_path / "zelador.yaml"
    config.write_text(CONFIG)
    done = subprocess.run([sys.executable, "-m", "zelador", "validate", "-c", str(config),
                           "--strict"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ZELADOR_VENDOR_ROOT": str(root)})
    notes = [line for line in done.stderr.splitlines() if line.startswith("zelador: note: ")]
    assert len(notes) == 3, done.stderr
    assert notes[0].startswith(f"zelador: note: monitor: {root}/etc/xdg/autostart/"
                               "cco-mon.desktop:4: the desktop's autostart also starts it")


def test_the_daemon_journals_them_once_at_start(mfe, zelador_factory, tmp_path: Path) -> None:
    root = tmp_path / "m"
    (root / "etc/xdg/autostart").mkdir(parents=True)
    (root / "etc/xdg/autostart/mon.desktop").write_text(
        f"[Desktop Entry]\nExec={mfe.script(mfe.mon)}\n")
    z = zelador_factory(mfe.config(), ZELADOR_VENDOR_ROOT=str(root)).start()
    said = z.matching("vendor_starter", "monitor")
    assert len(said) == 1, said
    assert "as the user who logs in, while zelador runs it as root" in said[0]["message"]
