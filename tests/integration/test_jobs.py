"""Jobs end to end: the real daemon, real TCP clients, real processes under `zelador exec`, and the
real SQLite history in tmp_path. Default settings unless a test is about a setting."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Zelador, free_port, wait_for
from zelador.runtime.control import ask

ZELADOR = [sys.executable, "-m", "zelador"]



def jobs_config(port: int, jobs: str, intake: str = "") -> str:
    return f"""\
jobs:
{jobs}
intake: {{listen: "127.0.0.1:{port}"{intake}}}
"""


SEED_JOBS = """\
  JajaBackupData: {id: 25, schedule: "30 2 * * *", timezone: Europe/Prague, max_runtime: 20m}
  quick: {every: 1h, max_runtime: 2s}
"""


def send_lines(port: int, payload: bytes, timeout: float = 10.0) -> list[str]:
    """A plain TCP client, like the seed's: send, half-close, read every reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:  # closed on us with our lines unread
                break
            if not chunk:
                break
            data += chunk
    return data.decode().splitlines()


def job(z: Zelador, name: str) -> dict[str, Any]:
    return next(j for j in ask(z.socket, {"cmd": "jobs"})["jobs"] if j["name"] == name)


def job_events(z: Zelador, kind: str, name: str) -> list[dict[str, str]]:
    return [e for e in z.events() if e["kind"] == kind and e.get("job") == name]


def history(z: Zelador, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(z.tmp / "state" / "history.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def seed_daemon(zelador_factory) -> tuple[Zelador, int]:
    port = free_port()
    return zelador_factory(jobs_config(port, SEED_JOBS)).start(), port


def test_the_seeds_exact_wire_format_from_a_plain_tcp_client(seed_daemon) -> None:
    z, port = seed_daemon
    assert send_lines(port, b"#id=25;state=OK;name=JajaBackupData\r\n") == ["OK"]
    wait_for(lambda: job(z, "JajaBackupData")["state"] == "OK", what="job OK")
    assert job_events(z, "job_ok", "JajaBackupData")
    # the field order is free, `#` optional, the state in any case, the id alone names the job
    replies = send_lines(port, b"state=fail;id=25;msg=disk full; really\nname=JajaBackupData;"
                               b"state=Start\n")
    assert replies == ["OK", "OK"]
    wait_for(lambda: job(z, "JajaBackupData")["state"] == "RUNNING", what="job RUNNING")
    failed = job_events(z, "job_failed", "JajaBackupData")[0]
    assert "disk full; really" in failed["message"]


def test_bash_dev_tcp_client_gets_its_answer(seed_daemon) -> None:
    _z, port = seed_daemon
    script = (f"exec 3<>/dev/tcp/127.0.0.1/{port}; echo '#id=25;state=OK;name=JajaBackupData' >&3;"
              " read -r reply <&3; echo \"$reply\"")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "OK"


def test_bad_reports_are_answered_err_counted_and_journaled_once_a_minute(seed_daemon) -> None:
    z, port = seed_daemon
    bad = b"".join(b"#id=99;state=OK\nstate=MAYBE;name=quick\nname=nope;state=ok\n" for _ in range(50))
    replies = send_lines(port, bad + b"name=quick;state=ok\n")
    assert len(replies) == 151 and replies[-1] == "OK"
    assert replies[:3] == ["ERR no job with id=99", "ERR state='MAYBE' is not OK, FAIL or START",
                           "ERR unknown job 'nope'"]
    wait_for(lambda: job(z, "quick")["state"] == "OK", what="the good report after the bad ones")
    z.wait_event("report_rejected")
    assert len(z.matching("report_rejected")) == 1  # 150 bad lines: one journal line
    assert ask(z.socket, {"cmd": "jobs"})["intake"]["rejected"] == 150
    said = z.matching("report_rejected")[0]["message"]
    assert "unknown job" in said and "bad state" in said  # counted per kind, not kept
    # a few of them are kept in the history as examples, not every one
    wait_for(lambda: history(z, "SELECT COUNT(*) FROM reports WHERE accepted = 0")[0][0] >= 1,
             what="raw reports in the history")
    assert history(z, "SELECT COUNT(*) FROM reports WHERE accepted = 0")[0][0] < 150


def test_pipelined_reports_on_one_connection(seed_daemon) -> None:
    z, port = seed_daemon
    lines = b"".join(b"name=quick;state=start;run=r%d\nname=quick;state=ok;run=r%d\n" % (i, i)
                     for i in range(500))
    assert send_lines(port, lines) == ["OK"] * 1000
    wait_for(lambda: history(z, "SELECT COUNT(*) FROM runs WHERE job = 'quick' AND state = 'OK'"
                             )[0][0] == 500, what="500 runs in the history")


def test_a_100mb_line_costs_bounded_memory_and_its_connection(seed_daemon) -> None:
    z, port = seed_daemon
    assert z.proc is not None
    worker = psutil.Process(ask(z.socket, {"cmd": "jobs"})["intake"]["worker"])
    before = worker.memory_info().rss + psutil.Process(z.proc.pid).memory_info().rss
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < 100 << 20:
                conn.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed on us, as it should be
        try:
            reply = conn.recv(200)
        except ConnectionResetError:
            reply = b""
    assert sent < 100 << 20, "a line without end was read on and on"
    assert reply in (b"", b"ERR line too long (more than 4096 bytes)\n")
    growth = worker.memory_info().rss + psutil.Process(z.proc.pid).memory_info().rss - before
    assert growth < 16 << 20, f"RSS grew {growth >> 20} MiB"
    assert send_lines(port, b"name=quick;state=ok\n") == ["OK"]  # still serving


def test_connection_cap_says_busy_and_idle_clients_are_dropped(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, SEED_JOBS, ", max_connections: 20, idle_timeout: 1s"))
    z.start()
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        worker = psutil.Process(ask(z.socket, {"cmd": "jobs"})["intake"]["worker"])
        listing = getattr(worker, "net_connections", None) or worker.connections  # psutil < 6
        wait_for(lambda: len(listing("tcp")) >= 21, what="20 clients held")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            assert extra.recv(100).startswith(b"ERR busy")
        # the idle ones are closed after idle_timeout, then reports get through again
        assert held[0].recv(10) == b""
        assert send_lines(port, b"name=quick;state=ok\n") == ["OK"]
    finally:
        for conn in held:
            conn.close()
    assert ask(z.socket, {"cmd": "jobs"})["intake"]["busy"] >= 1


def test_an_address_outside_allow_is_closed_unanswered(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, SEED_JOBS, ", allow: [10.0.0.0/8]")).start()
    assert send_lines(port, b"name=quick;state=ok\n") == []
    wait_for(lambda: ask(z.socket, {"cmd": "jobs"})["intake"]["refused"] == 1, what="counted")


def test_zelador_exec_passes_output_keeps_the_tail_and_returns_the_status(seed_daemon) -> None:
    z, _ = seed_daemon
    script = "for i in $(seq 1 3000); do echo line $i; done; echo oops >&2; exit 7"
    out = subprocess.run([*ZELADOR, "exec", "quick", "--socket", z.socket, "--", "sh", "-c", script],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 7
    assert out.stdout.count("\n") == 3000 and out.stderr == "oops\n"
    state = job(z, "quick")
    assert state["state"] == "FAIL" and state["last"]["exit_status"] == 7
    assert state["last"]["message"] == "oops"
    wait_for(lambda: history(z, "SELECT output FROM runs WHERE state = 'FAIL'"), what="run row")
    tail = history(z, "SELECT output FROM runs WHERE state = 'FAIL'")[0][0]
    assert len(tail.encode()) <= 10 * 1024 and tail.endswith("line 3000\noops\n")
    assert job_events(z, "job_started", "quick") and job_events(z, "job_failed", "quick")


def test_zelador_exec_runs_the_job_when_the_daemon_is_down(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    out = subprocess.run([*ZELADOR, "exec", "quick", "--socket", str(tmp_path / "none.sock"), "--",
                          "sh", "-c", f"echo hi; touch {marker}"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and out.stdout == "hi\n" and marker.exists()
    assert out.stderr.count("zelador is not running") == 1
    assert "running the job anyway" in out.stderr


def test_zelador_exec_passes_sigterm_on_and_reports_the_kill(seed_daemon, tmp_path: Path) -> None:
    z, _ = seed_daemon
    ready = tmp_path / "ready"
    proc = subprocess.Popen([*ZELADOR, "exec", "quick", "--socket", z.socket, "--", "sh", "-c",
                             f"touch {ready}; exec sleep 60"])
    try:
        wait_for(ready.exists, what="the job to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
    finally:
        proc.kill()
    assert job(z, "quick")["last"]["message"] == "killed by SIGTERM"


def test_zelador_report_and_an_unknown_job(seed_daemon) -> None:
    z, _ = seed_daemon
    ok = subprocess.run([*ZELADOR, "report", "quick", "fail", "-m", "no disk", "--exit-code", "2",
                         "--socket", z.socket], capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0 and "FAIL" in ok.stdout
    bad = subprocess.run([*ZELADOR, "report", "qiuck", "ok", "--socket", z.socket],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 64 and "no job 'qiuck'" in bad.stderr
    jobs = subprocess.run([*ZELADOR, "jobs", "--socket", z.socket], capture_output=True, text=True,
                          timeout=10)
    assert jobs.returncode == 3 and "quick" in jobs.stdout and "no disk" in jobs.stdout


def test_a_run_started_before_a_restart_of_zelador_times_out_on_time(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, "  slow: {every: 1h, max_runtime: 3s}")).start()
    assert send_lines(port, b"name=slow;state=start;run=a\n") == ["OK"]
    wait_for(lambda: job(z, "slow")["state"] == "RUNNING", what="RUNNING")
    started = time.monotonic()
    z.stop()
    z.start()
    z.wait_event("job_timeout", timeout=10)
    assert time.monotonic() - started < 8  # on time, not reset by the restart
    assert job(z, "slow")["state"] == "TIMEOUT"


def test_the_report_worker_is_not_root_and_is_replaced_when_it_dies(seed_daemon) -> None:
    z, port = seed_daemon
    first = ask(z.socket, {"cmd": "jobs"})["intake"]["worker"]
    worker = psutil.Process(first)
    assert worker.ppid() == z.proc.pid
    if os.geteuid() == 0:
        wait_for(lambda: worker.uids().effective != 0, what="the worker to give up root")
        assert worker.nice() == 10
    assert send_lines(port, b"name=quick;state=ok\n") == ["OK"]
    worker.kill()
    z.wait_event("degraded")
    assert "worker exited (-9)" in z.matching("degraded")[0]["message"]  # its status, not reaped
    again = wait_for(lambda: ask(z.socket, {"cmd": "jobs"})["intake"]["worker"] not in (None, first)
                     and ask(z.socket, {"cmd": "jobs"})["intake"]["worker"], timeout=15,
                     what="a new worker")
    assert psutil.Process(again).ppid() == z.proc.pid
    assert send_lines(port, b"name=quick;state=ok\n") == ["OK"]
    assert ask(z.socket, {"cmd": "jobs"})["intake"]["accepted"] == 2


def test_a_reload_adding_a_job_reaches_the_worker(seed_daemon) -> None:
    z, port = seed_daemon
    assert send_lines(port, b"name=later;state=ok\n") == ["ERR unknown job 'later'"]
    text = z.config_text.replace("intake:", "  later: {every: 1d}\nintake:")
    z.write_config(text)
    z.signal(signal.SIGHUP)
    z.wait_event("reloaded")
    wait_for(lambda: send_lines(port, b"name=later;state=ok\n") == ["OK"], what="the new job known")


def test_a_damaged_history_is_moved_aside(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, SEED_JOBS))
    (z.tmp / "state").mkdir(parents=True)
    (z.tmp / "state" / "history.db").write_bytes(b"this is not a database\n" * 100)
    z.start()
    z.wait_event("degraded")
    assert "damaged" in z.matching("degraded")[0]["message"]
    assert list((z.tmp / "state").glob("history.db.corrupt-*"))
    assert send_lines(port, b"name=quick;state=ok\n") == ["OK"]
    wait_for(lambda: history(z, "SELECT COUNT(*) FROM runs")[0][0] == 1, what="a fresh history")


def test_zelador_history_lists_programs_and_jobs(zelador_factory, mfe) -> None:
    port = free_port()
    config = mfe.config() + jobs_config(port, SEED_JOBS)
    z = zelador_factory(config).start()
    z.wait_event("started", "comunicador")
    send_lines(port, b"name=quick;state=fail;exit=3\n")
    z.wait_event("job_failed")
    state = str(z.tmp / "state")
    out = wait_for(lambda: (r := subprocess.run([*ZELADOR, "history", "--state-dir", state,
                                                 "--since", "1h"], capture_output=True,
                                                text=True, timeout=10)).stdout.count("\n") >= 3
                   and r, what="history rows")
    assert "comunicador" in out.stdout and "job_failed" in out.stdout
    only = subprocess.run([*ZELADOR, "history", "quick", "--kind", "job_failed", "--json",
                           "--state-dir", state], capture_output=True, text=True, timeout=10)
    import json

    rows = json.loads(only.stdout)
    assert [r["kind"] for r in rows] == ["job_failed"] and rows[0]["fields"]["exit_status"] == "3"


def test_a_flood_of_connections_does_not_delay_a_restart(zelador_factory, mfe) -> None:
    port = free_port()
    z = zelador_factory(mfe.config() + jobs_config(port, SEED_JOBS)).start()
    first = z.wait_event("started", "comunicador")
    stop = time.monotonic() + 3

    def flood() -> None:
        while time.monotonic() < stop:
            with socket.socket() as conn:
                conn.settimeout(2)
                try:
                    conn.connect(("127.0.0.1", port))
                    conn.sendall(b"name=quick;state=ok\n")
                    conn.recv(16)
                except OSError:
                    pass

    import threading

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        os.kill(int(first["pid"]), signal.SIGKILL)
        z.wait_event("started", "comunicador", count=2, timeout=10)
    finally:
        for t in threads:
            t.join()
    assert ask(z.socket, {"cmd": "jobs"})["intake"]["accepted"] > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
def test_zelador_exec_runs_the_command_as_the_jobs_user(seed_daemon) -> None:
    z, _ = seed_daemon
    out = subprocess.run([*ZELADOR, "exec", "quick", "--user", "nobody", "--socket", z.socket,
                          "--", "sh", "-c", "id -un; echo $HOME"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["nobody", "/nonexistent"]
    assert job(z, "quick")["state"] == "OK"  # reported by zelador exec, which stayed root


def test_reports_of_a_run_while_zelador_is_down_are_spooled_and_applied_at_start(
        zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, SEED_JOBS))
    state = z.tmp / "state"
    out = subprocess.run([*ZELADOR, "exec", "quick", "--socket", z.socket, "--state-dir",
                          str(state), "--", "sh", "-c", "echo done; exit 4"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 4
    assert "reports kept in" in out.stderr
    assert len(list((state / "spool").glob("*.json"))) == 1
    z.start()
    z.wait_event("reports_replayed")
    quick = job(z, "quick")
    assert quick["state"] == "FAIL" and quick["last"]["exit_status"] == 4
    assert quick["last"]["duration"] is not None
    assert not list((state / "spool").glob("*.json"))


def test_reports_held_while_zelador_was_down_are_sent_when_it_is_back(zelador_factory,
                                                                       tmp_path: Path) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, SEED_JOBS))
    go = tmp_path / "go"
    proc = subprocess.Popen([*ZELADOR, "exec", "quick", "--socket", z.socket, "--state-dir",
                             str(z.tmp / "state"), "--", "sh", "-c",
                             f"while [ ! -e {go} ]; do sleep 0.05; done"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "kept for zelador" in proc.stderr.readline()  # the start could not be sent
        z.start()  # zelador comes back while the job runs
        go.touch()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert job(z, "quick")["state"] == "OK"
    assert len(job_events(z, "job_started", "quick")) == 1
    assert not list((z.tmp / "state").glob("spool/*.json"))


def test_a_schedule_edited_while_zelador_was_stopped_applies_at_start(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, '  nightly: {schedule: "0 3 * * *", timezone: UTC}'))
    z.start()
    before = job(z, "nightly")["expected"]
    z.stop()
    z.config_text = jobs_config(port, '  nightly: {schedule: "0 5 * * *", timezone: UTC}')
    z.start()
    after = job(z, "nightly")["expected"]
    assert (after - before) % 86400 == 2 * 3600  # 05:00, not the saved 03:00


def test_the_loop_stops_reading_the_worker_when_enough_reports_wait(monkeypatch) -> None:
    """In process: a real Loop, a real worker, a real client; HELD_BACK made small."""
    import threading

    from zelador.config.model import Intake, Job
    from zelador.programs.launcher import Launcher
    from zelador.runtime import intake as intake_module
    from zelador.runtime.jobs import JobBook
    from zelador.runtime.loop import Loop

    monkeypatch.setattr(intake_module, "HELD_BACK", 10)
    loop = Loop()
    seen: list[Any] = []

    class Sink:
        def emit(self, event: Any) -> None:
            seen.append(event)

    book = JobBook([Job("quick", every=3600.0)], loop=loop, sinks=[Sink()])
    port = free_port()
    unwatched: list[int] = []
    real_unwatch = loop.unwatch
    monkeypatch.setattr(loop, "unwatch", lambda fd: (unwatched.append(fd), real_unwatch(fd)))
    launcher = Launcher()
    server = intake_module.IntakeProcess(Intake(port=port), book, loop,
                                         spawn=launcher.spawn_helper, emit=seen.append)
    replies: list[str] = []
    client = threading.Thread(target=lambda: replies.extend(send_lines(
        port, b"".join(b"name=quick;state=ok;run=r%d\n" % i for i in range(500)))))
    client.start()
    try:
        deadline = time.monotonic() + 30
        while sum(1 for e in seen if getattr(e, "kind", "") == "job_ok") < 500:
            assert time.monotonic() < deadline, "reports not all applied"
            loop.turn(0.1)
            assert len(server._pending) <= 10 + 5000  # HELD_BACK plus one read at the most
        client.join(10)
    finally:
        server.close()
        loop.close()
    assert replies == ["OK"] * 500
    assert unwatched, "the channel was never held back"
