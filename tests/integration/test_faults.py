"""Regression tests for the ways the core broke its promise on real terminals (issue 8).

They run the world users have: a vendor launcher that never reaps (killed daemons stay zombies),
the shipped restart policy (`stable: 10s`), `duplicates: stop`. Each one failed before the fix.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import pids_named, wait_for
from zelador.programs.procevents import open_proc_events


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def settled_in(pid: int, age: float = 1.5) -> None:
    """Wait until `pid` is older than a fresh pid (which the table re-reads anyway): the case
    that matters is a daemon that ran for a while and then died."""
    born = psutil.Process(pid).create_time()
    wait_for(lambda: time.time() - born > age, age + 2, f"pid {pid} to be {age}s old")


def rescan(z) -> None:
    """Make the daemon look at the process table now (a reload does), and wait for it."""
    count = len(z.matching("reloaded")) + 1
    z.signal(signal.SIGHUP)
    z.wait_event("reloaded", count=count)


def test_killed_instance_left_a_zombie_by_its_launcher_is_never_adopted(stubborn_mfe, zelador_factory):
    mfe = stubborn_mfe
    z = zelador_factory(mfe.config(defaults=True, monitor=True,
                                   extra_com="    duplicates: stop\n")).start()
    first = int(z.wait_event("started", "comunicador")["pid"])
    mon = int(z.wait_event("started", "monitor")["pid"])
    settled_in(first)
    kill9(first)
    second = int(z.wait_event("started", "comunicador", count=2)["pid"])
    assert second != first and zombie(first)  # the adverse world holds
    z.wait_event("started", "monitor", count=2)  # part_of: exactly one restart of Monitor
    rescan(z)
    assert z.program("comunicador")["pid"] == second and z.program("comunicador")["state"] == "RUNNING"
    assert pids_named(mfe.com) == [second] and len(pids_named(mfe.mon)) == 1
    assert len(z.matching("exited", "comunicador")) == 1 and not z.matching("duplicate")
    assert len(z.matching("started", "monitor")) == 2 and mon not in pids_named(mfe.mon)
    assert z.program("comunicador")["restarts"] == 1
    for name in ("comunicador", "monitor"):  # no dead process was ever taken for a started one
        started = [e["pid"] for e in z.matching("started", name) + z.matching("found", name)]
        assert len(started) == len(set(started)), started
    assert not [e for e in z.events() if "found by scan" in e["message"]]
    # the loop does not spin on the dead instance's readable pidfd
    before = cpu_seconds(z.proc.pid)
    deadline = time.monotonic() + 1.0
    wait_for(lambda: time.monotonic() > deadline, 2, "a second of idling")
    assert cpu_seconds(z.proc.pid) - before < 0.2




def test_exit_while_a_duplicate_runs_adopts_the_duplicate_and_starts_nothing(mfe, zelador_factory):
    z = zelador_factory(mfe.config(defaults=True, monitor=False)).start()
    main = int(z.wait_event("started", "comunicador")["pid"])
    extra = subprocess.Popen([str(mfe.bin / mfe.com), "1000"], start_new_session=True)
    try:
        rescan(z)
        assert z.wait_event("duplicate", "comunicador")["pid"] == str(extra.pid)
        settled_in(main)
        kill9(main)
        found = z.wait_event("found", "comunicador")
        assert found["pid"] == str(extra.pid)
        assert not z.matching("restarting") and pids_named(mfe.com) == [extra.pid]
        assert z.program("comunicador")["pid"] == extra.pid
    finally:
        extra.kill()
        extra.wait()


def test_start_timeout_keeps_the_setsid_daemon_and_kills_the_hung_script(mfe, zelador_factory, tmp_path):
    hang = mfe.bin / "hang-setsid.sh"
    marker = tmp_path / "script.pid"
    hang.write_text(f"#!/bin/sh\ncd {mfe.bin}\necho $$ > {marker}\n"
                    f"setsid ./{mfe.com} infinity > /dev/null 2>&1 &\nexec sleep 1000\n")
    hang.chmod(0o755)
    text = mfe.config(defaults=True, monitor=False).replace(str(mfe.script(mfe.com)), str(hang))
    z = zelador_factory(text.replace("start_timeout: 5s", "start_timeout: 1s")).start()
    note = z.wait_event("script_failed", "comunicador", timeout=5)
    daemon = int(z.wait_event("started", "comunicador")["pid"])
    assert f"kept pid {daemon}" in note["message"]
    script = int(marker.read_text())
    wait_for(lambda: not psutil.pid_exists(script) or zombie(script), 5, "the hung script killed")
    rescan(z)
    assert pids_named(mfe.com) == [daemon] and not z.matching("start_failed")
    assert z.program("comunicador")["state"] == "RUNNING"


def test_program_that_dies_before_the_first_look_fails_at_once_and_says_so(mfe, zelador_factory):
    dies = mfe.bin / mfe.com
    dies.unlink()
    dies.write_bytes(open("/bin/false", "rb").read())  # noqa: SIM115 the daemon exits 1 at once
    dies.chmod(0o755)
    # without exec events nothing sees it alive: only the reaped orphan tells
    z = zelador_factory(mfe.config(defaults=True, monitor=False), "--proc-events", "no").start()
    failed = z.wait_event("start_failed", "comunicador", timeout=4)  # start_timeout is 5s
    assert "exited with status 1 right after it started" in failed["message"], failed["message"]
    assert "appeared within" not in failed["message"]


def test_duplicate_stop_signals_only_the_duplicate_and_escalates_to_sigkill(mfe, zelador_factory):
    pkill = "/usr/bin/pkill"
    extra_com = (f"    duplicates: stop\n    stop: {{command: [{pkill}, -x, {mfe.com}], timeout: 1s}}\n")
    z = zelador_factory(mfe.config(defaults=True, monitor=False, extra_com=extra_com)).start()
    main = int(z.wait_event("started", "comunicador")["pid"])
    stubborn = subprocess.Popen(["sh", "-c", f"trap '' TERM; exec {mfe.bin / mfe.com} 1000"],
                                start_new_session=True)  # ignores SIGTERM
    try:
        wait_for(lambda: stubborn.pid in pids_named(mfe.com), 5, "the stubborn copy to exec")
        rescan(z)
        z.wait_event("duplicate", "comunicador")
        assert stubborn.wait(10) == -signal.SIGKILL
        assert z.wait_event("stop_timeout", "comunicador")["pid"] == str(stubborn.pid)
        assert pids_named(mfe.com) == [main] and z.program("comunicador")["pid"] == main
    finally:
        stubborn.kill()
        stubborn.wait()


def test_missing_start_script_at_boot_holds_back_only_that_program(mfe, zelador_factory):
    script = mfe.script(mfe.com)
    saved = script.read_text()
    script.unlink()
    z = zelador_factory(mfe.config(defaults=True)).start()
    problem = z.wait_event("host_problem", "comunicador")
    assert f"start script '{script}' does not exist" in problem["message"]
    assert z.wait_event("started", "monitor")  # the others are supervised
    assert z.proc.poll() is None and z.program("comunicador")["state"] == "FATAL"
    assert "checked again every 5s" in z.program("comunicador")["reason"]
    script.write_text(saved)  # the driver upgrade finished
    script.chmod(0o755)
    z.wait_event("started", "comunicador", timeout=10)
    assert len(z.matching("host_problem")) == 1  # said once, not every re-check


def test_failing_start_script_fails_at_once_and_quotes_its_output(mfe, zelador_factory):
    script = mfe.script(mfe.com)
    script.write_text("#!/bin/sh\necho 'Missing privilege separation directory: /run/sshd' >&2\n"
                      "exit 255\n")
    z = zelador_factory(mfe.config(defaults=True, monitor=False)).start()
    failed = z.wait_event("start_failed", "comunicador", timeout=4)  # start_timeout is 5s
    assert "status 255" in failed["message"] and "/run/sshd" in failed["message"]
    status = z.program("comunicador")
    assert status["restarts"] == 0 and status["attempts"] >= 1


def test_reload_that_removes_a_program_kills_its_start_script(mfe, zelador_factory, tmp_path):
    marker = tmp_path / "hang.pid"
    script = mfe.script(mfe.mon)
    script.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 1000\n")
    z = zelador_factory(mfe.config()).start()
    wait_for(marker.exists, 5, "Monitor's start script")
    pid = int(wait_for(lambda: marker.read_text().strip(), 5, "its pid"))
    z.write_config(mfe.config(monitor=False))
    rescan(z)
    wait_for(lambda: not psutil.pid_exists(pid) or zombie(pid), 5, "the script to be killed")


def test_zelador_start_adopts_a_copy_started_by_hand(mfe, zelador_factory):
    from zelador.cli import main

    z = zelador_factory(mfe.config()).start()
    z.wait_event("started", "monitor")
    sock = ["--socket", z.socket]
    assert main(["stop", "monitor", *sock]) == 0
    subprocess.run([str(mfe.script(mfe.mon))], check=True)
    by_hand = wait_for(lambda: pids_named(mfe.mon), 5, "Monitor started by hand")
    assert main(["start", "monitor", *sock]) == 0
    assert pids_named(mfe.mon) == by_hand and z.program("monitor")["pid"] == by_hand[0]


def test_check_asks_the_running_daemon_and_returns_without_waiting(mfe, zelador_factory, tmp_path):
    z = zelador_factory(mfe.config()).start()
    z.wait_event("started", "monitor")
    check = [sys.executable, "-m", "zelador", "check", "-c", str(z.config_path),
             "--socket", z.socket, "--runtime-dir", str(tmp_path / "other-run"), "--scopes", "no"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=8)  # interval is 10s
    assert done.returncode == 0 and "2/2 up" in done.stdout
    assert len(pids_named(mfe.mon)) == 1 and len(pids_named(mfe.com)) == 1
    z.stop()  # and on its own, with everything running, it returns at the first look
    alone = [*check[:6], "--runtime-dir", str(tmp_path / "alone"), "--log-target", "stderr",
             "--scopes", "no"]
    done = subprocess.run(alone, capture_output=True, text=True, timeout=8)
    assert done.returncode == 0 and "comunicador: RUNNING" in done.stdout, done.stderr


@pytest.mark.parametrize("events", ["auto", "no"], ids=["exec-events", "scan-only"])
def test_wrapper_that_execs_into_the_program_late_is_seen_and_not_doubled(mfe, zelador_factory,
                                                                           events):
    script = mfe.script(mfe.com)
    script.write_text(f"#!/bin/sh\ncd {mfe.bin}\n"
                      f"nohup sh -c 'sleep 3; exec ./{mfe.com} infinity' > /dev/null 2>&1 &\n")
    text = mfe.config(defaults=True, monitor=False).replace("start_timeout: 5s", "start_timeout: 20s")
    z = zelador_factory(text, "--proc-events", events).start()
    started = z.wait_event("started", "comunicador", timeout=10)
    assert pids_named(mfe.com) == [int(started["pid"])]
    assert z.program("comunicador")["attempts"] == 1 and not z.matching("start_failed")


connector = pytest.mark.skipif(open_proc_events() is None,
                               reason="the proc connector needs root in the initial pid namespace")


@connector
def test_duplicate_started_by_hand_is_seen_at_its_exec_not_at_the_next_scan(mfe, zelador_factory):
    z = zelador_factory(mfe.config(interval="1h", monitor=False)).start()
    main = int(z.wait_event("started", "comunicador")["pid"])
    extra = subprocess.Popen([str(mfe.bin / mfe.com), "1000"], start_new_session=True)
    try:  # no reload, no scan for an hour: only the exec event can tell
        dup = z.wait_event("duplicate", "comunicador", timeout=3)
        assert dup["pid"] == str(extra.pid) and f"beside pid {main}" in dup["message"]
    finally:
        extra.kill()
        extra.wait()


def test_counters_and_a_stop_survive_kill_9_of_zelador(mfe, zelador_factory):
    from zelador.cli import main

    z = zelador_factory(mfe.config()).start()
    first = int(z.wait_event("started", "comunicador")["pid"])
    z.wait_event("started", "monitor")
    kill9(first)
    z.wait_event("started", "comunicador", count=2)
    assert main(["stop", "monitor", "--socket", z.socket]) == 0
    state_file = z.tmp / "state" / "state.json"
    wait_for(lambda: state_file.exists() and '"stopped":true' in state_file.read_text(), 5,
             "the state file to say monitor is stopped")
    z.proc.kill()  # as the watchdog or the OOM killer would
    z.proc.wait()
    z.log.rename(z.tmp / "zelador.log.1")
    z.start()
    wait_for(lambda: z.program("comunicador")["state"] == "RUNNING", 5, "comunicador adopted")
    assert z.program("comunicador")["restarts"] == 1
    assert z.program("monitor")["state"] == "STOPPED" and not pids_named(mfe.mon), \
        z.log.read_text() + (z.tmp / "zelador.log.1").read_text()


def test_an_unreadable_state_file_is_journaled_and_ignored(mfe, zelador_factory):
    z = zelador_factory(mfe.config(monitor=False))
    (z.tmp / "state").mkdir()
    (z.tmp / "state" / "state.json").write_text("\x00garbage")
    z.start()
    assert "ignored, starting fresh" in z.wait_event("state_ignored")["message"]
    z.wait_event("started", "comunicador")
