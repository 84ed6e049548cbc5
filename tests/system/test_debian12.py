"""zelador as a sysadmin meets it: the .deb installed on a booted Debian 12, driven by systemctl.

One container for the module; the tests run in file order and each leaves zelador active with
the shipped config and both stand-in programs running, except the last, which purges.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from zelador.systemd.journal import MESSAGE_IDS

from .conftest import Machine, wait_for

pytestmark = pytest.mark.system

CONFIG = "/etc/zelador/zelador.yaml"
DROPIN = "/etc/zelador/zelador.d/50-site.yaml"
ALERTS_DROPIN = "/etc/zelador/zelador.d/60-alerts.yaml"
UNIT = "zelador.service"
READY_ID = MESSAGE_IDS["ready"]
EXITED_ID = MESSAGE_IDS["exited"]
STARTED_ID = MESSAGE_IDS["started"]
REJECTED_ID = MESSAGE_IDS["config_rejected"]
SYSTEMD_STARTED_ID = "39f53479d3a045ac8e11786248231fbf"  # systemd's "Started UNIT" (job done)


def one_pid(machine: Machine, name: str) -> int:
    try:
        pids = wait_for(lambda: machine.pids(name), 10, f"{name} to run")
    except AssertionError as exc:  # say what systemd and zelador saw
        raise AssertionError(f"{exc}:\n" + machine.run(
            "journalctl -n 40 --no-pager | grep -v kernel").stdout) from None
    assert len(pids) == 1, f"{name}: {pids}"
    return int(pids[0])


def main_pid(machine: Machine) -> int:
    return int(machine.show("zelador", "MainPID")["MainPID"])


def test_installed_service_is_enabled_and_active_only_after_ready(bookworm: Machine) -> None:
    assert bookworm.sh("systemctl is-enabled zelador") == "enabled"
    assert bookworm.active("zelador") == "active"
    after = bookworm.cursor()
    bookworm.sh("systemctl restart zelador")  # Type=notify: returns once READY=1 arrived
    ready = wait_for(lambda: bookworm.journal(after, _SYSTEMD_UNIT=UNIT, MESSAGE_ID=READY_ID), 10,
                     "zelador's ready event")
    started = bookworm.journal(after, MESSAGE_ID=SYSTEMD_STARTED_ID, UNIT=UNIT)
    assert started, "systemd logged no 'Started zelador.service'"
    # zelador's first scan (and its ready entry, logged just before READY=1) precede "active".
    assert int(ready[0]["__MONOTONIC_TIMESTAMP"]) <= int(started[0]["__MONOTONIC_TIMESTAMP"])
    unit = bookworm.show("zelador", "Type", "StatusText", "ActiveState")
    assert unit["Type"] == "notify"
    assert unit["ActiveState"] == "active"
    assert unit["StatusText"].startswith("2/2 up"), unit
    assert "Status: \"2/2 up" in bookworm.run("systemctl status zelador").stdout
    one_pid(bookworm, "Comunicador")
    one_pid(bookworm, "Monitor")


FETCH = ("python3 -c 'import sys, urllib.request; "
         "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' ")


def test_the_shipped_config_serves_status_and_metrics_on_loopback(bookworm: Machine) -> None:
    status = json.loads(bookworm.sh(FETCH + "http://127.0.0.1:9813/api/status"))
    assert {p["name"]: p["state"] for p in status["programs"]}["comunicador"] == "RUNNING"
    metrics = bookworm.sh(FETCH + "http://127.0.0.1:9813/metrics")
    assert 'zelador_program_up{program="comunicador"} 1.0' in metrics
    listening = [line.split()[1] for line in bookworm.sh("cat /proc/net/tcp").splitlines()[1:]
                 if line.split()[1].endswith(":2655") and line.split()[3] == "0A"]
    assert listening == ["0100007F:2655"]  # 127.0.0.1:9813 only


def test_kill_9_comunicador_is_replaced_within_a_second_and_journaled(bookworm: Machine) -> None:
    old, new, took, after = bookworm.kill_and_wait("Comunicador")
    assert took < 1.0
    entries = wait_for(lambda: bookworm.journal(after, _SYSTEMD_UNIT=UNIT,
                                                ZELADOR_PROGRAM="comunicador",
                                                ZELADOR_EVENT="started"), 5, "the started event")
    exited = bookworm.journal(after, _SYSTEMD_UNIT=UNIT, ZELADOR_PROGRAM="comunicador",
                              ZELADOR_EVENT="exited")
    assert exited and exited[0]["MESSAGE_ID"] == EXITED_ID
    assert exited[0]["ZELADOR_PID"] == str(old)
    assert entries[0]["MESSAGE_ID"] == STARTED_ID
    assert entries[0]["ZELADOR_PID"] == str(new)
    assert int(entries[0]["ZELADOR_RESTARTS"]) >= 1
    # the recipes the operations guide gives
    assert "comunicador" in bookworm.sh("journalctl -u zelador -F ZELADOR_PROGRAM").split()
    recipe = bookworm.sh("journalctl -u zelador ZELADOR_PROGRAM=comunicador --no-pager -o cat")
    assert f"pid {old} exited" in recipe and f"running as pid {new}" in recipe
    # the catalog explains the event (`journalctl -x`)
    explained = bookworm.sh(f"journalctl -x -u zelador MESSAGE_ID={EXITED_ID} --no-pager -n 1")
    assert "Subject: zelador: comunicador exited" in explained, explained
    assert f"The watched process (pid {old}) is gone." in explained, explained
    # Monitor is part_of Comunicador: restarted once, never doubled
    wait_for(lambda: len(bookworm.pids("Monitor")) == 1, 5, "one Monitor")


def test_restart_and_stop_of_zelador_leave_comunicador_running(bookworm: Machine) -> None:
    com, mon = one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor")
    scopes = bookworm.sh("systemctl list-units --type=scope --no-legend 'zelador-*'")
    assert "zelador-comunicador-start-" in scopes, scopes
    bookworm.sh("systemctl restart zelador")
    assert (one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor")) == (com, mon)
    bookworm.sh("systemctl stop zelador")
    time.sleep(0.5)
    assert bookworm.pids("Comunicador") == [com]
    bookworm.sh("systemctl start zelador")
    assert (one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor")) == (com, mon)
    status = bookworm.sh("zelador status")
    assert re.search(rf"comunicador\s+RUNNING\s+{com}\s", status), status


def test_package_upgrade_restarts_zelador_keeps_programs_and_the_edited_config(
        bookworm: Machine, newer_deb: Path) -> None:
    com, mon = one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor")
    before = main_pid(bookworm)
    edited = (bookworm.root / CONFIG.lstrip("/")).read_text() + "# tuned on this terminal\n"
    bookworm.write(CONFIG, edited)
    shutil.copy(newer_deb, bookworm.root / "var" / "tmp" / newer_deb.name)
    bookworm.sh(f"apt-get install -y -q /var/tmp/{newer_deb.name}", timeout=180)
    version = newer_deb.name.split("_")[1]
    assert bookworm.sh("dpkg-query -W -f '${Version}' zelador") == version
    assert bookworm.active("zelador") == "active"
    assert main_pid(bookworm) != before  # postinst restarted it ...
    assert (one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor")) == (com, mon)  # ... only it
    assert (bookworm.root / CONFIG.lstrip("/")).read_text() == edited  # a conffile: edits are kept


def test_reload_of_a_broken_dropin_fails_with_the_error_and_the_old_config_stays(
        bookworm: Machine) -> None:
    """`systemctl reload` runs `zelador reload` (ExecReload=), which waits for the daemon's
    verdict: a refused config fails the reload, so a config tool learns its push failed."""
    assert "ExecReload=/usr/bin/zelador reload" in bookworm.sh("systemctl cat zelador")
    good = (bookworm.root / CONFIG.lstrip("/")).read_text()
    monitor = good[good.index("  monitor:"):good.index("part_of: comunicador")]
    pid = main_pid(bookworm)
    before = json.loads(bookworm.sh("zelador status --json"))["config_identity"]
    after = bookworm.cursor()
    bookworm.sh("sed -i '/^  monitor:/,/part_of: comunicador/d' " + CONFIG)  # Monitor moves ...
    broken = "# site\nprograms:\n" + monitor + "part_off: comunicador\n"  # ... to a drop-in
    bookworm.write(DROPIN, broken)
    try:
        done = bookworm.run("systemctl reload zelador")
        assert done.returncode != 0, done
        line = broken.splitlines().index("    part_off: comunicador") + 1
        error = f"{DROPIN}:{line}: programs.monitor.part_off: unknown key (did you mean 'part_of'?)"
        said = wait_for(lambda: [e for e in bookworm.journal(after, _SYSTEMD_UNIT=UNIT)
                                 if error in e["MESSAGE"]], 10, "the error in the journal")
        assert any(e.get("MESSAGE_ID") == REJECTED_ID for e in said), said
        assert any(e["MESSAGE"] == f"zelador: error: {error}" for e in said), said  # reload's
        assert bookworm.active("zelador") == "active"
        assert main_pid(bookworm) == pid
        status = json.loads(bookworm.sh("zelador status --json"))
        assert status["config_identity"]["sha256"] == before["sha256"]  # the old config stays
        assert status["config_identity"]["last_reload"]["ok"] is False
        assert "last reload REFUSED" in bookworm.run("zelador status").stdout
        old_mon = one_pid(bookworm, "Monitor")
        bookworm.sh(f"kill -9 {old_mon}")  # the old config still restarts Monitor
        wait_for(lambda: [p for p in bookworm.pids("Monitor") if p != old_mon], 5, "new Monitor")
        bookworm.write(DROPIN, broken.replace("part_off", "part_of"))
        bookworm.sh("systemctl reload zelador")
        identity = json.loads(bookworm.sh("zelador status --json"))["config_identity"]
        assert identity["files"] == [CONFIG, DROPIN] and identity["last_reload"]["ok"] is True
    finally:
        bookworm.sh(f"rm -f {DROPIN}")
        bookworm.write(CONFIG, good)
        bookworm.sh("systemctl reload zelador")


def test_sigstop_zelador_is_restarted_by_the_watchdog_and_programs_are_untouched(
        bookworm: Machine) -> None:
    # The shipped WatchdogSec is 30s; a drop-in shortens it so the test takes seconds.
    dropin = "/etc/systemd/system/zelador.service.d/test-watchdog.conf"
    bookworm.write(dropin, "[Service]\nWatchdogSec=3s\nLimitCORE=0\n")
    try:
        bookworm.sh("systemctl daemon-reload && systemctl restart zelador")
        com, mon = one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor")
        restarts = int(bookworm.show("zelador", "NRestarts")["NRestarts"])
        stopped = main_pid(bookworm)
        time.sleep(4)  # a healthy zelador pings: no restart while it runs
        assert int(bookworm.show("zelador", "NRestarts")["NRestarts"]) == restarts
        bookworm.sh(f"kill -STOP {stopped}")
        wait_for(lambda: int(bookworm.show("zelador", "NRestarts")["NRestarts"]) > restarts, 20,
                 "systemd's watchdog to restart zelador", every=0.5)
        wait_for(lambda: bookworm.active("zelador") == "active",
                 20, "zelador active again")
        assert main_pid(bookworm) != stopped
        assert "watchdog" in bookworm.sh("journalctl -u zelador --no-pager -n 30").lower()
        now = (one_pid(bookworm, "Comunicador"), one_pid(bookworm, "Monitor"))
        assert now == (com, mon), bookworm.sh("journalctl --no-pager -n 60 | grep -v kernel")
    finally:
        bookworm.sh(f"rm -f {dropin} && systemctl daemon-reload && systemctl restart zelador")


TIMED = """\
programs:
  comunicador:
    match: {name: Comunicador}
    start: /opt/sefaz/cco/bin/runcco-ser.sh
    start_timeout: 2s
  monitor:
    match: {name: Monitor}
    start: /opt/sefaz/cco/bin/runcco-mon.sh
    start_timeout: 2s
    part_of: comunicador
check:
  every: 2s
  timeout: 4s
"""


def test_check_timer_fires_its_oneshot_finishes_and_a_hung_check_is_ended(
        bookworm: Machine) -> None:
    """Units rendered by `zelador units` for a config with a 2s check and a 4s timeout."""
    good = (bookworm.root / CONFIG.lstrip("/")).read_text()
    bookworm.write(CONFIG, TIMED)
    check = "zelador-check.service"
    try:
        bookworm.sh("zelador units --output /etc/systemd/system && systemctl daemon-reload")
        assert "TimeoutStartSec=4s" in bookworm.sh("systemctl cat zelador-check.service")
        bookworm.sh("systemctl reload zelador")
        after = bookworm.cursor()
        bookworm.sh("systemctl start zelador-check.timer")
        wait_for(lambda: len(bookworm.journal(after, UNIT=check, JOB_TYPE="start",
                                              JOB_RESULT="done")) >= 2, 15, "two runs of the check",
                 every=0.5)
        unit = bookworm.show(check, "Result", "ExecMainStatus")
        assert unit == {"Result": "success", "ExecMainStatus": "0"}, unit
        bookworm.sh("systemctl stop zelador-check.timer")

        # zelador stopped: the check itself starts what is missing, in a scope that outlives it
        bookworm.sh("systemctl stop zelador")
        bookworm.sh("pkill -9 -x Comunicador; pkill -9 -x Monitor; true")
        wait_for(lambda: not bookworm.pids("Comunicador"), 5, "Comunicador gone")
        bookworm.sh(f"systemctl start {check}")  # blocks until the oneshot is done
        time.sleep(1)
        com = one_pid(bookworm, "Comunicador")
        one_pid(bookworm, "Monitor")
        assert bookworm.show(check, "Result")["Result"] == "success"
        assert bookworm.active(check) == "inactive"
        bookworm.sh("systemctl start zelador")
        assert one_pid(bookworm, "Comunicador") == com  # adopted, not restarted

        # a hung zelador (SIGSTOP) leaves the check waiting on its socket: TimeoutStartSec ends it
        pid = main_pid(bookworm)
        bookworm.sh(f"kill -STOP {pid}")
        try:
            begun = time.monotonic()
            hung = bookworm.run(f"systemctl start {check}", timeout=30)
            took = time.monotonic() - begun
        finally:
            bookworm.sh(f"kill -CONT {pid}")
        assert hung.returncode != 0
        assert bookworm.show(check, "Result")["Result"] == "timeout"
        assert 3.5 < took < 9, took
        bookworm.sh(f"systemctl start {check}")  # not stuck: the next run works
        assert bookworm.show(check, "Result")["Result"] == "success"
    finally:
        bookworm.write(CONFIG, good)
        bookworm.sh("rm -f /etc/systemd/system/zelador*.service /etc/systemd/system/zelador*.timer"
                    " && systemctl daemon-reload && systemctl stop zelador-check.timer"
                    " && systemctl restart zelador")


JOBS = """
jobs:
  tick: {schedule: "* * * * *", max_runtime: 30s, grace: 2m, run: [/bin/sh, -c, "echo tick done"]}
  hang: {schedule: "* * * * *", max_runtime: 5s, grace: 2m, run: [/bin/sleep, "600"]}
"""


def test_job_timers_run_jobs_that_go_ok_and_a_hung_one_goes_timeout(bookworm: Machine) -> None:
    """Timers rendered by `zelador units` for cron jobs; their runs reported by `zelador exec`."""
    good = (bookworm.root / CONFIG.lstrip("/")).read_text()
    bookworm.write(CONFIG, good + JOBS)
    try:
        bookworm.sh("zelador units --output /etc/systemd/system && systemctl daemon-reload")
        assert "OnCalendar=*-*-* *:*:00" in bookworm.sh("systemctl cat zelador-job-tick.timer")
        bookworm.sh("systemctl reload zelador")
        wait_for(lambda: "tick" in bookworm.run("zelador jobs").stdout, 10, "jobs known")
        after = bookworm.cursor()
        bookworm.sh("systemctl start zelador-job-tick.timer zelador-job-hang.timer")

        def state(name: str) -> str:
            out = bookworm.run("zelador jobs --json").stdout
            return next(j["state"] for j in json.loads(out)["jobs"] if j["name"] == name)

        wait_for(lambda: state("tick") == "OK", 75, "tick OK (from its timer)", every=1)
        wait_for(lambda: state("hang") == "TIMEOUT", 20, "hang TIMEOUT", every=0.5)
        jobs = bookworm.run("zelador jobs")
        assert jobs.returncode == 3, jobs.stdout  # a job in TIMEOUT
        ok = bookworm.journal(after, ZELADOR_JOB="tick", ZELADOR_EVENT="job_ok")
        assert ok and ok[0]["MESSAGE_ID"] == MESSAGE_IDS["job_ok"]
        timeout = bookworm.journal(after, ZELADOR_JOB="hang", ZELADOR_EVENT="job_timeout")
        assert timeout and int(timeout[0]["ZELADOR_DURATION_USEC"]) >= 5_000_000
        # the run's output tail is in the history, which `zelador history` reads
        history = bookworm.sh("zelador history tick --kind job_ok")
        assert "job tick OK" in history
        # systemd ends the hung run at TimeoutStartSec (max_runtime + 30s): reported, still TIMEOUT
        wait_for(lambda: bookworm.journal(after, ZELADOR_JOB="hang", ZELADOR_EVENT="job_failed"),
                 60, "the hung run ended by systemd", every=1)
        assert state("hang") == "TIMEOUT"
    finally:
        bookworm.sh("systemctl stop zelador-job-tick.timer zelador-job-hang.timer "
                    "zelador-job-hang.service; true")
        bookworm.write(CONFIG, good)
        bookworm.sh("rm -f /etc/systemd/system/zelador*.service /etc/systemd/system/zelador*.timer"
                    " && systemctl daemon-reload && systemctl reload zelador")


RECEIVER = """\
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if os.path.exists("/run/rx.fail"):
            self.send_response(500); self.end_headers(); return
        with open("/run/rx.posts", "ab") as out:
            out.write(body + b"\\n")
        self.send_response(200); self.end_headers()
http.server.HTTPServer(("127.0.0.1", 8099), Handler).serve_forever()
"""
ALERTS = """
jobs:
  nightly: {every: 1h}
alerts:
  group_wait: 0s
  channels:
    hook: {webhook: {url: "http://127.0.0.1:8099/zelador", timeout: 5s}}
"""


def test_alerts_reach_a_webhook_and_survive_kill_9_of_zelador(bookworm: Machine) -> None:
    """A job failure alerted to a webhook; its recovery, queued while the endpoint fails, is
    delivered by the zelador that systemd starts again after a kill -9."""
    good = (bookworm.root / CONFIG.lstrip("/")).read_text()
    bookworm.write("/root/rx.py", RECEIVER)
    bookworm.sh("rm -f /run/rx.posts /run/rx.fail && systemd-run --unit=rx python3 /root/rx.py")
    bookworm.write(CONFIG, good + ALERTS)

    def posts() -> list[dict[str, Any]]:  # /run is the container's own tmpfs: read it inside
        lines = bookworm.sh("cat /run/rx.posts 2>/dev/null; true").splitlines()
        return [a for line in lines if line.strip() for a in json.loads(line)["alerts"]]

    try:
        bookworm.sh("systemctl reload zelador")
        wait_for(lambda: "nightly" in bookworm.run("zelador jobs").stdout, 10, "job known")
        after = bookworm.cursor()
        bookworm.sh("zelador report nightly fail -m 'disk full'")
        wait_for(posts, 15, "the problem posted")
        assert [(a["phase"], a["subject"], a["problem"]) for a in posts()] == \
            [("problem", "nightly", "failed")]
        sent = wait_for(lambda: bookworm.journal(after, ZELADOR_EVENT="alert_sent"), 10, "journal")
        assert sent[0]["ZELADOR_CHANNEL"] == "hook" and sent[0]["ZELADOR_JOB"] == "nightly"
        assert sent[0]["MESSAGE_ID"] == MESSAGE_IDS["alert_sent"]
        bookworm.sh("touch /run/rx.fail && zelador report nightly ok")
        wait_for(lambda: bookworm.journal(after, ZELADOR_EVENT="alert_failed"), 15, "a failure")
        old = main_pid(bookworm)
        bookworm.sh(f"kill -9 {old}")
        wait_for(lambda: bookworm.active("zelador") == "active" and main_pid(bookworm) not in
                 (0, old), 30, "zelador started again by systemd", every=0.5)
        bookworm.sh("rm -f /run/rx.fail")
        wait_for(lambda: len(posts()) == 2, 60, "the recovery delivered after the restart",
                 every=0.5)
        assert posts()[1]["phase"] == "recovery"
        listing = bookworm.sh("zelador alerts")
        assert "open incidents: 0" in listing and "2 sent" in listing
    finally:
        bookworm.write(CONFIG, good)
        bookworm.sh("systemctl stop rx; systemctl reload zelador; true")


SYSTEM_RULES = """
system:
  every: 1s
  disk_root: {disk: /, above: 99.99%}
  crowded: {processes: count, above: 1}
"""


def test_system_checks_under_systemd_are_listed_and_journaled(bookworm: Machine) -> None:
    good = (bookworm.root / CONFIG.lstrip("/")).read_text()
    bookworm.write(CONFIG, good + SYSTEM_RULES)
    try:
        after = bookworm.cursor()
        bookworm.sh("systemctl reload zelador")
        failed = wait_for(lambda: bookworm.journal(after, ZELADOR_EVENT="check_failed"), 15,
                          "the process-count rule")
        assert failed[0]["ZELADOR_CHECK"] == "crowded"
        assert failed[0]["MESSAGE_ID"] == MESSAGE_IDS["check_failed"]
        assert int(float(failed[0]["ZELADOR_VALUE"])) > 1
        listing = bookworm.run("zelador checks --json")
        assert listing.returncode == 3, listing.stdout  # one check is failing
        states = {c["name"]: c["state"] for c in json.loads(listing.stdout)}
        assert states == {"disk_root": "OK", "crowded": "FAILING"}
    finally:
        bookworm.write(CONFIG, good)
        bookworm.sh("systemctl reload zelador")


def test_man_pages_and_tab_completion_are_installed_and_work(bookworm: Machine) -> None:
    """What apt put there: the pages where man looks, the completion where bash-completion
    loads it, completing the shipped config's programs through the installed zelador."""
    for page in ("usr/share/man/man1/zelador.1.gz", "usr/share/man/man5/zelador.yaml.5.gz"):
        assert (bookworm.root / page).is_file(), page
    bookworm.write("/root/tab.sh", "source /usr/share/bash-completion/completions/zelador\n"
                   "COMP_WORDS=(zelador restart ''); COMP_CWORD=2; _zelador\n"
                   'echo "${COMPREPLY[@]}"\n')
    assert bookworm.sh("bash /root/tab.sh") == "comunicador monitor"
    catalog = bookworm.sh("journalctl --list-catalog | grep -c zelador")
    assert int(catalog) >= len(MESSAGE_IDS)


SHUTDOWN_ALERTS = """\
alerts:
  group_wait: 0s
  channels:
    hook: {webhook: {url: "http://127.0.0.1:8099/zelador", timeout: 5s}}
  rules:
    - {channels: [hook]}
"""
CRASHES = ("exited", "start_failed", "restarting", "backoff", "gave_up")


def test_poweroff_is_not_a_crash_no_exit_no_restart_no_alert_and_no_is_back(
        bookworm: Machine) -> None:
    """`systemctl poweroff` with a webhook for every problem, then the next boot: systemd stops
    zelador before the programs' scopes (Before=), zelador says why it stops, and nothing is
    logged or alerted as a crash, then or after the boot."""
    bookworm.write("/root/rx.py", RECEIVER)
    bookworm.write("/etc/systemd/system/rx.service", "[Service]\nExecStart=/usr/bin/python3 "
                   "/root/rx.py\n[Install]\nWantedBy=multi-user.target\n")
    bookworm.sh("systemctl daemon-reload && systemctl enable --now rx && rm -f /run/rx.posts")
    bookworm.sh("mkdir -p /var/log/journal && journalctl --flush")  # the shutdown, read after
    bookworm.write(ALERTS_DROPIN, SHUTDOWN_ALERTS)
    try:
        bookworm.sh("systemctl reload zelador")
        com = one_pid(bookworm, "Comunicador")
        scopes = bookworm.sh("systemctl show -p Before --value 'zelador-comunicador-start-*'")
        assert "zelador.service" in scopes.split(), scopes
        bookworm.stable(com)
        outbox = [line for line in bookworm.sh("zelador alerts").splitlines()
                  if line.startswith(("open incidents", "outbox"))]  # earlier tests' alerts
        boot = bookworm.sh("cat /proc/sys/kernel/random/boot_id").replace("-", "")
        after = bookworm.cursor()
        bookworm.poweroff_and_boot()
        wait_for(lambda: bookworm.active("zelador") == "active", 30, "zelador after the boot")
        one_pid(bookworm, "Comunicador")
        wait_for(lambda: [e for e in bookworm.journal(after, _SYSTEMD_UNIT=UNIT)
                          if e["_BOOT_ID"] != boot and "watching 2 programs" in e["MESSAGE"]],
                 20, "zelador's first look after the boot")
        entries = bookworm.journal(after, _SYSTEMD_UNIT=UNIT)
        before = [e for e in entries if e["_BOOT_ID"] == boot]  # the shutdown
        said = [e["MESSAGE"] for e in before]
        assert "system is shutting down; leaving programs to systemd" in said, said
        crashes = [e["MESSAGE"] for e in before if e.get("ZELADOR_EVENT") in CRASHES]
        assert crashes == [], crashes
        now = [e for e in entries if e["_BOOT_ID"] != boot]  # the next boot
        assert [e["MESSAGE"] for e in now if e.get("ZELADOR_EVENT") in CRASHES] == []
        # An alert, "is back" included, is an outbox row the moment its event is handled
        # (group_wait 0s), and the events of the shutdown and the boot are handled by now.
        listing = [line for line in bookworm.sh("zelador alerts").splitlines()
                   if line.startswith(("open incidents", "outbox"))]
        assert listing == outbox and outbox[0] == "open incidents: 0", (outbox, listing)
        assert bookworm.sh("cat /run/rx.posts 2>/dev/null; true") == ""
    finally:
        bookworm.sh(f"rm -f {ALERTS_DROPIN}; systemctl disable --now rx; systemctl reload zelador")


def test_purge_removes_the_unit_the_config_and_the_state(bookworm: Machine) -> None:
    com = one_pid(bookworm, "Comunicador")
    done = bookworm.run("apt-get purge -y -q zelador 2>&1", timeout=180)
    assert done.returncode == 0, done.stdout
    assert "warning" not in done.stdout.lower(), done.stdout
    assert not (bookworm.root / "usr/lib/systemd/system/zelador.service").exists()
    assert not (bookworm.root / "etc/zelador").exists()
    assert not (bookworm.root / "var/lib/zelador").exists()
    assert not (bookworm.root / "etc/systemd/system/multi-user.target.wants/zelador.service").exists()
    assert bookworm.active("zelador") == "inactive"
    # zelador never stops a watched program, not even when it is removed
    assert bookworm.pids("Comunicador") == [com]
