"""Debian 13 (Python 3.13, systemd 257, merged /usr): the same .deb, built once on Debian 12,
installs, supervises, upgrades and purges as it does on Debian 12. Kept lean: one boot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..unit.test_schedule import elapses
from .conftest import REPO, Machine, wait_for

pytestmark = pytest.mark.system

CONFIG = "/etc/zelador/zelador.yaml"
DROPIN = "/etc/zelador/zelador.d/50-site.yaml"


def main_pid(machine: Machine) -> int:
    return int(machine.show("zelador", "MainPID")["MainPID"])


def test_installs_and_supervises_on_debian_13(trixie: Machine) -> None:
    assert trixie.sh("python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 13)"
    assert trixie.sh("systemctl is-enabled zelador") == "enabled"
    assert trixie.sh("systemctl show -p FragmentPath --value zelador") == \
        "/usr/lib/systemd/system/zelador.service"
    assert trixie.active("zelador") == "active"
    assert trixie.show("zelador", "StatusText")["StatusText"].startswith("2/2 up")
    old, new, took, after = trixie.kill_and_wait("Comunicador")
    assert took < 1.0
    wait_for(lambda: trixie.journal(after, ZELADOR_PROGRAM="monitor", ZELADOR_EVENT="started"),
             5, "Monitor (part_of)")
    kinds = {(e.get("ZELADOR_PROGRAM"), e.get("ZELADOR_EVENT"), e.get("ZELADOR_PID"))
             for e in trixie.journal(after, _SYSTEMD_UNIT="zelador.service")}
    assert {("comunicador", "exited", str(old)), ("comunicador", "started", str(new))} <= kinds
    status = trixie.sh("zelador status")
    assert re.search(rf"comunicador\s+RUNNING\s+{new}\s", status), status


def test_systemd_257_calendar_output_is_read(trixie: Machine) -> None:
    """The schedule tests compare with `systemd-analyze calendar`, whose wording changed in 257."""
    text = trixie.sh("TZ=UTC systemd-analyze calendar --iterations=3 "
                     "--base-time='2026-03-28 00:00:00 UTC' '*-*-* 02:30:00'")
    assert len(elapses(text)) == 3, text


def changed_conffile(deb: Path, workdir: Path) -> Path:
    """`deb` with one more line in its shipped zelador.yaml (a conffile): what a new release
    does to the file that a terminal may have edited."""
    tree = workdir / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    shipped = tree / CONFIG.lstrip("/")
    shipped.write_text(shipped.read_text() + "# a line the next release added\n")
    out = workdir / deb.name
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(out)], check=True,
                   capture_output=True)
    return out


def test_upgrade_with_a_changed_conffile_and_a_dropin_never_prompts_purge_never_warns(
        trixie: Machine, newer_deb: Path, tmp_path: Path) -> None:
    """The terminal's own settings live in a drop-in and the conffile is as shipped: the upgrade
    takes the new conffile without asking (stdin closed, as unattended-upgrades runs it)."""
    com = trixie.pids("Comunicador")
    shipped = (REPO / "config" / "zelador.yaml").read_text()
    trixie.write(CONFIG, shipped)  # the fixture's edit undone: the conffile is as shipped
    trixie.write(DROPIN, "# this terminal's own\nsystem:\n  disk_root: {disk: /, above: 99%}\n")
    trixie.sh("systemctl reload zelador")
    wait_for(lambda: "disk_root" in trixie.run("zelador checks").stdout, 10, "the drop-in's check")
    before = main_pid(trixie)
    deb = changed_conffile(newer_deb, tmp_path)
    shutil.copy(deb, trixie.root / "var" / "tmp" / deb.name)
    done = trixie.run(f"apt-get install -y -q /var/tmp/{deb.name} </dev/null 2>&1", timeout=180)
    assert done.returncode == 0 and "conffile" not in done.stdout, done.stdout
    assert trixie.sh("dpkg-query -W -f '${Version}' zelador") == newer_deb.name.split("_")[1]
    assert (trixie.root / CONFIG.lstrip("/")).read_text().endswith("the next release added\n")
    assert trixie.active("zelador") == "active"
    assert main_pid(trixie) != before
    # postinst restarted zelador, and only it
    assert wait_for(lambda: trixie.pids("Comunicador"), 10, "Comunicador") == com
    assert "disk_root" in trixie.run("zelador checks").stdout  # the drop-in still in force
    done = trixie.run("apt-get purge -y -q zelador 2>&1", timeout=180)
    assert done.returncode == 0, done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout
    assert not (trixie.root / "usr/lib/systemd/system/zelador.service").exists()
    assert not (trixie.root / "etc/zelador").exists()
    assert trixie.active("zelador") == "inactive"
    assert trixie.pids("Comunicador") == com  # zelador never stops a watched program
