"""The floor we claim: the same .deb installs and supervises on Debian 11 (Python 3.9)."""

from __future__ import annotations

import re
import time

import pytest

from .conftest import Machine, wait_for

pytestmark = pytest.mark.system


def test_installs_supervises_and_survives_its_own_restart_on_debian_11(bullseye: Machine) -> None:
    assert bullseye.sh("python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 9)"
    assert bullseye.active("zelador") == "active"
    assert bullseye.show("zelador", "StatusText")["StatusText"].startswith("2/2 up")
    old = wait_for(lambda: bullseye.pids("Comunicador"), 10, "Comunicador")[0]
    bullseye.stable(old)
    after = bullseye.cursor()
    bullseye.sh(f"kill -9 {old}")
    killed = time.monotonic()
    new = wait_for(lambda: [p for p in bullseye.pids("Comunicador") if p != old], 5,
                   "a new Comunicador", every=0.01)[0]
    assert time.monotonic() - killed < 1.0
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
