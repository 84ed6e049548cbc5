"""zelador's own helper processes in the launcher's list: a dead one leaves it, and a stale entry
whose pid now belongs to another child never stalls orphan reaping. Real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_for
from zelador.programs.launcher import Launcher
from zelador.programs.reaper import reap_orphans


def test_a_dead_helper_leaves_the_list_at_the_next_spawn():
    launcher = Launcher()
    first = launcher.spawn_helper([sys.executable, "-c", "pass"], ())
    first.wait(10)
    second = launcher.spawn_helper(["sleep", "60"], ())
    try:
        assert list(launcher.helpers) == [second.pid]
    finally:
        second.kill()
        second.wait()


def test_a_stale_helper_entry_with_a_reused_pid_does_not_stall_reaping():
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait(10)  # reaped: its returncode is known, its entry is stale
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    # the pid of a fresh zombie child, as if the kernel had given it the old helper's number
    wait_for(lambda: Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z", 10,
             "a zombie")
    reaped = reap_orphans({}, {pid: done})
    assert [r.instance.pid for r in reaped if r.instance.pid == pid] == [pid]
    assert not os.path.exists(f"/proc/{pid}")
