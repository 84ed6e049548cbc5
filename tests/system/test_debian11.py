"""The floor we claim: the same .deb installs and supervises on Debian 11 (Python 3.9)."""

from __future__ import annotations

import re
import shlex

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
    # the shipped config's status page, with Debian 11's prometheus_client (0.9)
    fetch = ("python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
             "sys.argv[1], timeout=10).read().decode())' http://127.0.0.1:9813/metrics")
    metrics = wait_for(lambda: bullseye.run(fetch).stdout, 10, "/metrics")
    assert 'zelador_program_up{program="comunicador"} 1.0' in metrics


def test_jobs_on_debian_11_croniter_0_3_and_python_3_9(bullseye: Machine) -> None:
    """Debian 11 has python3-croniter 0.3.34: schedules, timers, the report worker, the history."""
    config = "/etc/zelador/zelador.yaml"
    good = (bullseye.root / config.lstrip("/")).read_text()
    jobs = ('\njobs:\n  fechamento: {id: 25, schedule: "30 2 * * 1-6", timezone: Europe/Prague,'
            " run: /bin/true}\n")
    bullseye.write(config, good + jobs)
    try:
        units = bullseye.sh("zelador units")
        assert "OnCalendar=Mon..Sat *-*-* 02:30:00 Europe/Prague" in units
        bullseye.sh("systemctl reload zelador")
        wait_for(lambda: "fechamento" in bullseye.run("zelador jobs").stdout, 10, "job known")
        script = ("exec 3<>/dev/tcp/127.0.0.1/2020; echo '#id=25;state=FAIL;name=fechamento' >&3;"
                  " read -r r <&3; echo $r")
        reply = bullseye.sh(f"bash -c {shlex.quote(script)}")
        assert reply == "OK"
        jobs_out = bullseye.run("zelador jobs")
        assert jobs_out.returncode == 3 and "FAIL" in jobs_out.stdout, jobs_out.stdout
        assert "CET" in jobs_out.stdout or "CEST" in jobs_out.stdout  # next run in its zone
        wait_for(lambda: "job_failed" in bullseye.run("zelador history fechamento").stdout, 10,
                 "the history row")
    finally:
        bullseye.write(config, good)
        bullseye.sh("systemctl reload zelador")
