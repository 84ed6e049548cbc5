"""`user: session` with real processes on this machine, against a stand-in of logind's state
files (ZELADOR_LOGIND_DIR; this machine's PID 1 is not systemd, so there is no logind here):
Monitor starts as the session's user with its DISPLAY and XAUTHORITY, waits while nobody is
logged in, comes back at the next login, moves on a session switch, follows a Comunicador
restart once. The real logind is in tests/system/test_session.py."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import pids_named, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")

SESSION = """UID={uid}
USER={user}
ACTIVE=1
STATE=active
TYPE=x11
CLASS=user
SEAT=seat0
DISPLAY={display}
LEADER={leader}
"""


class Logind:
    """A stand-in /run/systemd: seat0 and session files, as logind writes them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "seats").mkdir(parents=True)
        (root / "sessions").mkdir()
        self.logout()

    def login(self, sid: str, user: str, display: str, leader: int = 0) -> None:
        uid = pwd.getpwnam(user).pw_uid
        (self.root / "sessions" / sid).write_text(SESSION.format(
            uid=uid, user=user, display=display, leader=leader))
        (self.root / "seats" / "seat0").write_text(f"IS_SEAT0=1\nACTIVE={sid}\n")

    def logout(self) -> None:
        for session in (self.root / "sessions").iterdir():
            session.unlink()
        (self.root / "seats" / "seat0").write_text("IS_SEAT0=1\nACTIVE=\n")


@pytest.fixture
def desktop(mfe, tmp_path):
    folder = mfe.root
    while str(folder) != "/tmp":  # pytest's folders are 0700: let the session user reach it
        folder.chmod(0o755)
        folder = folder.parent
    record = tmp_path / "record"
    record.mkdir(mode=0o777)
    record.chmod(0o777)
    script = mfe.script(mfe.mon)  # the stand-in Monitor records who and where it runs
    script.write_text(f"""#!/bin/sh
cd "$(dirname "$0")" || exit 1
echo "$(id -un) DISPLAY=$DISPLAY XAUTHORITY=$XAUTHORITY XDG_SESSION_ID=$XDG_SESSION_ID" \\
    >> {record}/monitor.log
nohup ./{mfe.mon} infinity > /dev/null 2>&1 &
""")
    return Logind(tmp_path / "logind"), record / "monitor.log"


def monitor_config(mfe) -> str:
    return mfe.config(defaults=True, extra_mon="    user: session\n")


def test_monitor_waits_for_a_login_runs_in_it_and_waits_again_after_logout(mfe, desktop,
                                                                           zelador_factory):
    logind, record = desktop
    z = zelador_factory(monitor_config(mfe), ZELADOR_LOGIND_DIR=str(logind.root)).start()
    z.wait_event("started", "comunicador")
    waiting = z.wait_event("waiting", "monitor")
    assert "nobody is logged in" in waiting["message"]
    assert z.program("monitor")["state"] == "WAITING" and not pids_named(mfe.mon)

    # the session's leader (a display manager's session process) holds XAUTHORITY
    leader = subprocess.Popen(["sleep", "1000"], env={"XAUTHORITY": "/home/caixa/.Xauthority-test"})
    try:
        logind.login("3", "nobody", ":5", leader.pid)
        pid = int(z.wait_event("started", "monitor", timeout=20)["pid"])  # after session_grace
    finally:
        leader.kill()
        leader.wait()
    assert wait_for(lambda: record.exists() and record.read_text(), 5, "the record")
    assert record.read_text().splitlines()[-1] == (
        "nobody DISPLAY=:5 XAUTHORITY=/home/caixa/.Xauthority-test XDG_SESSION_ID=3")
    assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == "nobody"

    os.kill(pid, signal.SIGKILL)  # killed in the session: back in the session
    again = int(z.wait_event("started", "monitor", count=2)["pid"])
    assert record.read_text().count("DISPLAY=:5") == 2

    logind.logout()  # the session ends (and, as X goes, so does Monitor)
    z.wait_event("waiting", "monitor", count=2, timeout=10)
    os.kill(again, signal.SIGKILL)
    wait_for(lambda: not pids_named(mfe.mon), 5, "Monitor gone with the session")
    assert z.program("monitor")["state"] == "WAITING"
    assert z.program("monitor")["failures"] == 0 and not z.matching("start_failed", "monitor")

    logind.login("4", "nobody", ":6")  # the next login: it starts again, in that session
    z.wait_event("started", "monitor", count=3, timeout=20)
    assert "DISPLAY=:6" in record.read_text().splitlines()[-1]


def test_monitor_moves_to_the_newly_active_session_and_follows_comunicador_once(
        mfe, desktop, zelador_factory):
    logind, record = desktop
    logind.login("3", "nobody", ":5")
    z = zelador_factory(monitor_config(mfe), ZELADOR_LOGIND_DIR=str(logind.root)).start()
    first = int(z.wait_event("started", "monitor")["pid"])
    logind.login("7", "nobody", ":7")  # another session takes the screen (a VT switch)
    second = int(z.wait_event("started", "monitor", count=2, timeout=10)["pid"])
    assert second != first and "DISPLAY=:7" in record.read_text().splitlines()[-1]
    assert pids_named(mfe.mon) == [second]

    com = int(z.program("comunicador")["pid"])
    os.kill(com, signal.SIGKILL)  # part_of: Monitor is restarted once, in the session
    z.wait_event("started", "monitor", count=3, timeout=10)
    assert len(pids_named(mfe.mon)) == 1
    assert record.read_text().splitlines()[-1].endswith("XDG_SESSION_ID=7")
    assert len(z.matching("started", "monitor")) == 3
