"""`user: session` in a booted Debian 12 with a real logind and a real X server (Xvfb).

What is real: systemd and logind in the container, the .deb and its shipped config (Monitor has
`user: session`), a PAM login session of user `caixa` opened by pam_systemd (through
`systemd-run -p PAMName=login`, as a display manager would), an Xvfb display. What stands in:
the display manager itself (the session is opened by that unit, with XDG_SESSION_TYPE=x11 and
DISPLAY in its PAM environment, as lightdm sets them) and Monitor (a script that records its
user, DISPLAY and XAUTHORITY, and checks it can open the display with xdpyinfo).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Machine, installed, wait_for

pytestmark = pytest.mark.system

DISPLAY = ":5"
MONITOR_SCRIPT = """#!/bin/sh
# stand-in runcco-mon.sh: record who and where, check the display, then run the tray "daemon"
cd "$(dirname "$0")" || exit 1
if xdpyinfo >/dev/null 2>&1; then x=ok; else x=fail; fi
echo "$(id -un) DISPLAY=$DISPLAY XAUTHORITY=$XAUTHORITY session=$XDG_SESSION_ID x=$x" >> /var/tmp/monitor.log
nohup ./Monitor infinity > /dev/null 2>&1 &
"""
LOGIN = ("systemd-run --unit=desktop-caixa -p PAMName=login -p User=caixa "
         "-p Environment=XDG_SESSION_TYPE=x11 -p Environment=XDG_SESSION_CLASS=user "
         f"-p Environment=DISPLAY={DISPLAY} -p Environment=XDG_SEAT=seat0 "
         "-p Environment=XAUTHORITY=/home/caixa/.Xauthority /bin/sleep infinity")


@pytest.fixture(scope="module")
def desktop(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    with installed("bookworm", deb, tmp_path_factory.mktemp("desktop"), session_monitor=True
                   ) as machine:
        machine.sh("useradd -m -s /bin/sh caixa")
        machine.write("/opt/sefaz/cco/bin/runcco-mon.sh", MONITOR_SCRIPT, 0o755)
        machine.sh("systemd-run --unit=xvfb /usr/bin/Xvfb :5 -nolisten tcp -ac")
        wait_for(lambda: machine.run("test -S /tmp/.X11-unix/X5").returncode == 0, 15, "Xvfb")
        yield machine


def monitor_state(machine: Machine) -> str:
    out = machine.run("zelador status --json").stdout  # exit 3 while Monitor is not up
    import json

    return str(next(p for p in json.loads(out)["programs"] if p["name"] == "monitor")["state"])


def records(machine: Machine) -> list[str]:
    return machine.run("cat /var/tmp/monitor.log").stdout.splitlines()


def test_monitor_waits_runs_in_the_login_and_waits_again(desktop: Machine) -> None:
    m = desktop
    wait_for(lambda: monitor_state(m) == "WAITING", 20, "Monitor WAITING with nobody logged in")
    assert not m.pids("Monitor")
    assert "waiting for a graphical session" in m.sh("zelador status")
    m.sh(LOGIN)
    session = wait_for(lambda: m.run("loginctl list-sessions --no-legend").stdout.split(), 10,
                       "logind's session")[0]
    assert m.sh(f"loginctl show-session {session} -p Type --value") == "x11"
    (pid,) = wait_for(lambda: m.pids("Monitor"), 20, "Monitor in the session (after the grace)")
    assert m.sh(f"ps -o user= -p {pid}") == "caixa"
    line = wait_for(lambda: records(m), 5, "Monitor's record")[-1]
    assert line == (f"caixa DISPLAY={DISPLAY} XAUTHORITY=/home/caixa/.Xauthority "
                    f"session={session} x=ok")
    scope = m.sh(f"cat /proc/{pid}/cgroup")
    assert "user-" in scope and "zelador-monitor-start" in scope  # in the user's slice

    m.sh(f"kill -9 {pid}")  # killed: back in the session
    wait_for(lambda: [p for p in m.pids("Monitor") if p != pid], 10, "Monitor back")
    assert records(m)[-1].startswith("caixa DISPLAY=:5")

    m.sh("systemctl stop desktop-caixa")  # log out
    wait_for(lambda: monitor_state(m) == "WAITING", 10, "WAITING after logout")
    m.sh("pkill -x Monitor || true")  # a real X session's end takes its clients along
    m.sh(LOGIN)  # the next login: it starts again
    wait_for(lambda: m.pids("Monitor"), 20, "Monitor after the next login")
    assert monitor_state(m) == "RUNNING"
    entries = m.journal(ZELADOR_PROGRAM="monitor", ZELADOR_EVENT="start_failed")
    assert entries == [], [e["MESSAGE"] for e in entries]  # no failures counted while waiting


AUTOSTART = LOGIN.replace("/bin/sleep infinity", "/bin/sh -c 'sleep 1; "
                          "/opt/sefaz/cco/bin/runcco-mon.sh; exec sleep infinity'")


def test_a_login_whose_autostart_starts_monitor_yields_exactly_one_monitor(
        desktop: Machine) -> None:
    """The MFE's /etc/xdg/autostart/cco-mon.desktop starts Monitor at each login (here the
    session itself runs it a second in, as a desktop's autostart does); zelador waits its
    session_grace, finds that Monitor and adopts it instead of starting a second."""
    m = desktop
    m.write("/etc/xdg/autostart/cco-mon.desktop", "[Desktop Entry]\nType=Application\n"
            "Name=Monitor\nExec=/opt/sefaz/cco/bin/runcco-mon.sh\n")
    m.sh("systemctl stop desktop-caixa; pkill -x Monitor; true")
    wait_for(lambda: monitor_state(m) == "WAITING", 20, "WAITING, nobody logged in")
    start = m.cursor()
    m.sh("systemctl restart zelador")  # it says, at start, what the autostart entry means
    note = m.journal(start, ZELADOR_EVENT="vendor_starter")
    assert any("cco-mon.desktop:4: the desktop's autostart also starts it" in e["MESSAGE"]
               and "adopts that copy" in e["MESSAGE"] for e in note), note
    before = len(records(m))
    after = m.cursor()
    m.sh(AUTOSTART)
    wait_for(lambda: monitor_state(m) == "RUNNING", 30, "Monitor RUNNING in the login")
    assert len(m.pids("Monitor")) == 1
    assert len(records(m)) == before + 1  # one start: the autostart's
    started = m.journal(after, ZELADOR_PROGRAM="monitor", ZELADOR_EVENT="started")
    assert started == [], [e["MESSAGE"] for e in started]  # zelador adopted, launched nothing
    assert m.journal(after, ZELADOR_PROGRAM="monitor", ZELADOR_EVENT="found")  # the adoption
