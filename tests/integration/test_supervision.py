"""The real daemon supervising real nohup'd processes: kill them and watch them come back."""

from __future__ import annotations

import os
import signal
import threading
import time

from tests.conftest import pids_named, wait_for


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_killed_comunicador_comes_back_with_new_pid(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    first = int(z.wait_event("started", "comunicador")["pid"])
    assert pids_named(mfe.com) == [first]
    kill9(first)
    exited = z.wait_event("exited", "comunicador")
    assert exited["pid"] == str(first) and exited["level"] == "warning"
    again = z.wait_event("started", "comunicador", count=2)
    assert int(again["pid"]) != first and again["restarts"] == "1"
    assert pids_named(mfe.com) == [int(again["pid"])]


def test_twenty_kills_give_twenty_restarts_and_never_two_instances(mfe, zelador_factory):
    z = zelador_factory(mfe.config(monitor=False)).start()
    z.wait_event("started", "comunicador")
    most = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(pids_named(mfe.com)))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:  # one whole look first: on a loaded machine a look can outlast the 20 quick kills
        wait_for(lambda: most[0] == 1, 10, "the sampler's first look")
        for n in range(1, 21):
            pid = int(z.wait_event("started", "comunicador", count=n)["pid"])
            kill9(pid)
        z.wait_event("started", "comunicador", count=21)
    finally:
        stop.set()
        sampler.join()
    assert len(z.matching("exited", "comunicador")) == 20
    assert z.program("comunicador")["restarts"] == 20
    assert most[0] == 1
    assert len(pids_named(mfe.com)) == 1


def test_part_of_restarts_monitor_once_after_comunicador(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    z.wait_event("started", "comunicador")
    monitor_pid = int(z.wait_event("started", "monitor")["pid"])
    kill9(int(z.program("comunicador")["pid"]))
    z.wait_event("started", "comunicador", count=2)
    mon = z.wait_event("started", "monitor", count=2)
    time.sleep(0.5)  # room for a wrong second restart to show up
    assert len(z.matching("started", "monitor")) == 2
    assert int(mon["pid"]) != monitor_pid and not pids_named(mfe.mon).count(monitor_pid)
    assert len(pids_named(mfe.mon)) == 1
    names = [(e["kind"], e.get("program")) for e in z.events()]
    assert names.index(("started", "comunicador"), names.index(("exited", "comunicador"))) < \
        names.index(("stopping", "monitor"))
    assert z.program("monitor")["restarts"] == 1
    assert "because comunicador was restarted" in z.matching("stopping", "monitor")[0]["message"]


def test_hanging_start_script_is_killed_at_timeout_and_program_backs_off(mfe, zelador_factory, tmp_path):
    hang = mfe.bin / "hang.sh"
    marker = tmp_path / "hang.pid"
    hang.write_text(f"#!/bin/sh\necho $$ > {marker}\nsleep 1000 &\necho $! >> {marker}\nwait\n")
    hang.chmod(0o755)
    text = mfe.config(monitor=False).replace(str(mfe.script(mfe.com)), str(hang))
    text = text.replace("start_timeout: 5s", "start_timeout: 1s")
    z = zelador_factory(text).start()
    failed = z.wait_event("start_failed", "comunicador", timeout=5)
    assert "still running after 1s; killed it and everything it started" in failed["message"]
    assert "next try in 1s" in failed["message"]
    script_pid, child_pid = (int(x) for x in marker.read_text().split())
    for pid in (script_pid, child_pid):
        wait_for(lambda pid=pid: not _alive(pid), 3, f"pid {pid} to be killed")
    assert z.program("comunicador")["state"] in ("BACKOFF", "STARTING")


def test_script_that_exits_0_without_starting_process_is_a_failed_start(mfe, zelador_factory):
    text = mfe.config(monitor=False).replace(str(mfe.script(mfe.com)), "/bin/true")
    text = text.replace("start_timeout: 5s", "start_timeout: 500ms")
    z = zelador_factory(text).start()
    failed = z.wait_event("start_failed", "comunicador", timeout=5)
    assert f"start script exited with status 0 but no process matching name='{mfe.com}'" in \
        failed["message"]


def test_deleted_start_script_gives_clear_event_and_retries(mfe, zelador_factory):
    z = zelador_factory(mfe.config(monitor=False)).start()
    pid = int(z.wait_event("started", "comunicador")["pid"])
    script = mfe.script(mfe.com)
    saved = script.read_text()
    script.unlink()
    kill9(pid)
    failed = z.wait_event("host_problem", "comunicador")
    assert f"start script '{script}' does not exist" in failed["message"]
    assert z.program("comunicador")["state"] == "FATAL"
    script.write_text(saved)
    script.chmod(0o755)
    z.wait_event("started", "comunicador", count=2, timeout=10)
    assert len(pids_named(mfe.com)) == 1


def test_sigterm_leaves_programs_running(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    com = int(z.wait_event("started", "comunicador")["pid"])
    mon = int(z.wait_event("started", "monitor")["pid"])
    assert z.stop() == 0
    assert z.matching("shutdown")
    assert pids_named(mfe.com) == [com] and pids_named(mfe.mon) == [mon]


def test_restart_picks_up_running_programs_without_starting_new_ones(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    com = int(z.wait_event("started", "comunicador")["pid"])
    z.stop()
    z.log.unlink()
    z.start()
    found = z.wait_event("found", "comunicador")
    assert int(found["pid"]) == com and not z.matching("starting")


def test_sighup_with_broken_config_keeps_the_old_one(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    z.wait_event("started", "comunicador")
    z.write_config(mfe.config() + "  broken: {match: {nam: x}, start: /bin/true}\n")
    z.signal(signal.SIGHUP)
    rejected = z.wait_event("config_rejected")
    assert f"{z.config_path}:" in rejected["message"] and "programs.broken.match.nam" in \
        rejected["message"]
    assert rejected["level"] == "err"
    kill9(int(z.program("comunicador")["pid"]))  # still supervised with the old config
    z.wait_event("started", "comunicador", count=2)
    assert [p["name"] for p in z.status()["programs"]] == ["comunicador", "monitor"]


def test_sighup_with_good_config_adds_a_program(mfe, zelador_factory):
    z = zelador_factory(mfe.config(monitor=False)).start()
    z.wait_event("started", "comunicador")
    z.write_config(mfe.config())
    z.signal(signal.SIGHUP)
    assert "added monitor" in z.wait_event("reloaded")["message"]
    z.wait_event("started", "monitor")


def test_duplicate_is_reported_and_stopped_newest_first(mfe, zelador_factory):
    text = mfe.config(monitor=False) + "    duplicates: stop\n"
    z = zelador_factory(text).start()
    main = int(z.wait_event("started", "comunicador")["pid"])
    import subprocess
    extra = subprocess.Popen([str(mfe.bin / mfe.com), "1000"], start_new_session=True)
    try:
        z.signal(signal.SIGHUP)  # a reload rescans at once instead of at the 10s backstop
        dup = z.wait_event("duplicate", "comunicador")
        assert dup["pid"] == str(extra.pid) and f"beside pid {main}" in dup["message"]
        wait_for(lambda: extra.poll() is not None, 5, "the duplicate to be stopped")
        assert pids_named(mfe.com) == [main]
    finally:
        extra.kill()
        extra.wait()


def test_control_restart_and_stop_and_status_exit_codes(mfe, zelador_factory):
    from zelador.cli import main

    z = zelador_factory(mfe.config()).start()
    z.wait_event("started", "monitor")
    sock = ["--socket", z.socket]
    old = z.program("monitor")["pid"]
    assert main(["restart", "monitor", *sock]) == 0
    assert z.program("monitor")["pid"] != old
    assert main(["status", *sock]) == 0
    assert main(["stop", "monitor", *sock]) == 0
    assert z.program("monitor")["state"] == "STOPPED" and not pids_named(mfe.mon)
    assert main(["status", *sock]) == 3  # something watched is down
    assert main(["start", "monitor", *sock]) == 0
    assert z.program("monitor")["state"] == "RUNNING"
    assert main(["restart", "nosuch", *sock]) == 64  # a usage error, not "daemon unreachable"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
