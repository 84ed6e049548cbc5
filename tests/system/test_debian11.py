"""The floor we claim: the same .deb installs and supervises on Debian 11 (Python 3.9)."""

from __future__ import annotations

import re

import pytest

from .conftest import Machine, wait_for

pytestmark = pytest.mark.system


def test_installs_supervises_and_survives_its_own_restart_on_debian_11(bullseye: Machine) -> None:
    assert bullseye.sh("python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 9)"
    assert bullseye.active("zelador") == "active"
    assert bullseye.show("zelador", "StatusText")["StatusText"].startswith("2/2 up")
    old, new, took, after = bullseye.kill_and_wait("Comunicador")
    assert took < 1.0
    events = wait_for(lambda: bullseye.journal(after, ZELADOR_PROGRAM="monitor",
                                               ZELADOR_EVENT="started"), 5, "Monitor (part_of)")
    kinds = {(e.get("ZELADOR_PROGRAM"), e.get("ZELADOR_EVENT"), e.get("ZELADOR_PID"))
             for e in bullseye.journal(after, _SYSTEMD_UNIT="zelador.service")}
    assert {("comunicador", "exited", str(old)), ("comunicador", "started", str(new))} <= kinds
    monitor = int(events[0]["ZELADOR_PID"])
    bullseye.sh("systemctl restart zelador")
    assert bullseye.active("zelador") == "active"
    assert (bullseye.pids("Comunicador"), bullseye.pids("Monitor")) == ([new], [monitor])
    status = bullseye.sh("zelador status")
    assert re.search(rf"comunicador\s+RUNNING\s+{new}\s", status), status
