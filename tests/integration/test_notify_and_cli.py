"""sd_notify on a real AF_UNIX datagram socket; `check`, `validate`; refusing unsafe files."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import pids_named, wait_for
from zelador.config.reader import parse_config
from zelador.programs.proctable import ProcessTable


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    try:
        yield path, sock
    finally:
        sock.close()


class Collector:
    """Every datagram systemd would have received, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list = []

    def drain(self) -> list:
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except socket.timeout:
            pass
        return self.messages

    def wait(self, text: str, count: int = 1, timeout: float = 10.0) -> int:
        """Wait until `count` messages contain `text`; return the index of the last of them."""
        def seen() -> bool:
            self.drain()
            return len(self.where(text)) >= count
        wait_for(seen, timeout, f"{count}x {text}")
        return self.where(text)[count - 1]

    def where(self, text: str) -> list:
        return [i for i, m in enumerate(self.messages) if text in m]


def test_sd_notify_ready_status_watchdog_reload_stopping(mfe, zelador_factory, notify_socket):
    path, sock = notify_socket
    got = Collector(sock)
    z = zelador_factory(mfe.config(), NOTIFY_SOCKET=path, WATCHDOG_USEC="200000").start(
        wait_ready=False)
    ready = got.messages[got.wait("READY=1")]
    assert "STATUS=" in ready and f"MAINPID={z.proc.pid}" in ready
    got.wait("STATUS=2/2 up; 0 restarts")
    got.wait("WATCHDOG=1", count=5, timeout=5)  # every 100ms: half of WATCHDOG_USEC
    z.signal(signal.SIGHUP)
    reloading = got.wait("RELOADING=1")
    assert got.wait("READY=1", count=2) > reloading
    z.signal(signal.SIGTERM)
    got.wait("STOPPING=1")


def test_watchdog_not_sent_when_watchdog_pid_is_someone_else(mfe, zelador_factory, notify_socket):
    path, sock = notify_socket
    got = Collector(sock)
    zelador_factory(mfe.config(), NOTIFY_SOCKET=path, WATCHDOG_USEC="100000",
                    WATCHDOG_PID="1").start(wait_ready=False)
    got.wait("STATUS=2/2 up")
    time.sleep(0.5)
    assert not got.where("WATCHDOG=1") and not [m for m in got.drain() if "WATCHDOG" in m]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zelador", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_check_starts_what_is_missing_and_exits_0(mfe, zelador_factory, tmp_path):
    z = zelador_factory(mfe.config())
    z.write_config(mfe.config())
    done = subprocess.run(z.argv("check"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(pids_named(mfe.com)) == 1 and len(pids_named(mfe.mon)) == 1
    assert "comunicador: RUNNING" in done.stdout
    again = subprocess.run(z.argv("check"), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already running" in again.stderr
    assert len(pids_named(mfe.com)) == 1


def test_check_exits_3_when_a_start_fails(mfe, zelador_factory):
    text = mfe.config(monitor=False).replace(str(mfe.script(mfe.com)), "/bin/false")
    z = zelador_factory(text)
    z.write_config(text.replace("start_timeout: 5s", "start_timeout: 300ms"))
    done = subprocess.run(z.argv("check"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "comunicador: BACKOFF" in done.stdout


def test_check_defers_to_a_running_daemon(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    z.wait_event("started", "monitor")
    done = subprocess.run(z.argv("check"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "2/2 up" in done.stdout
    assert len(pids_named(mfe.com)) == 1


def test_second_daemon_is_refused(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    done = subprocess.run(z.argv("run"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 69 and "another zelador already runs" in done.stderr


def test_validate_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("programs:\n  a: {match: {name: A}, start: /bin/true}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("programs:\n  a: {match: {name: A}, start: /bin/ture}\n")
    ok = run_cli("validate", "-c", str(good))
    assert ok.returncode == 0 and "ok (1 programs: a)" in ok.stdout
    warned = run_cli("validate", "-c", str(bad))  # `run` would hold back just this program
    assert warned.returncode == 0 and "1 cannot start on this machine yet" in warned.stdout
    assert warned.stderr == (f"zelador: warning: {bad}:2: programs.a.start: '/bin/ture' does not "
                             "exist (did you mean true?)\n")
    assert run_cli("validate", "--strict", "-c", str(bad)).returncode == 78
    unreadable = tmp_path / "latin1.yaml"
    unreadable.write_bytes("# configura\xe7\xe3o\nprograms: {}\n".encode("latin-1"))
    latin = run_cli("validate", "-c", str(unreadable))
    assert latin.returncode == 78 and latin.stderr == (
        f"zelador: error: {unreadable}:1: not UTF-8 text (byte 0xe7; save the file as UTF-8)\n")
    folder = run_cli("validate", "-c", str(tmp_path))
    assert folder.returncode == 78 and folder.stderr.count("\n") == 1 and "directory" in folder.stderr
    usage = run_cli("validate", "--no-such-option")
    assert usage.returncode == 64 and "Traceback" not in usage.stderr


def test_status_without_daemon_is_unavailable(tmp_path):
    done = run_cli("status", "--socket", str(tmp_path / "none.sock"))
    assert done.returncode == 69 and "zelador is not running" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership rules apply to root")
def test_root_refuses_config_writable_by_others(tmp_path):
    config = tmp_path / "zelador.yaml"
    config.write_text("programs:\n  a: {match: {name: A}, start: /bin/true}\n")
    config.chmod(0o666)
    done = run_cli("validate", "-c", str(config))
    assert done.returncode == 78
    assert f"refusing config file '{config}'" in done.stderr and "is writable by others" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the ownership rules apply to root")
def test_root_refuses_start_script_owned_by_another_user(mfe, tmp_path):
    nobody = pwd.getpwnam("nobody")
    script = mfe.script(mfe.com)
    os.chown(script, nobody.pw_uid, nobody.pw_gid)
    config = tmp_path / "zelador.yaml"
    config.write_text(mfe.config(monitor=False))
    done = run_cli("validate", "--strict", "-c", str(config))
    assert done.returncode == 78
    assert f"{config}:5: programs.comunicador.start: refusing start script" in done.stderr
    assert f"is owned by uid {nobody.pw_uid}" in done.stderr and "chown root:root" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_program_runs_as_configured_user(mfe, zelador_factory):
    folder = mfe.root
    while str(folder) != "/tmp":  # pytest's folders are 0700: let `nobody` reach the script
        folder.chmod(0o755)
        folder = folder.parent
    z = zelador_factory(mfe.config(monitor=False, extra_com="    user: nobody\n")).start()
    pid = int(z.wait_event("started", "comunicador")["pid"])
    assert psutil.Process(pid).username() == "nobody"


@pytest.mark.skipif(not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK),
                    reason="steering pid allocation needs root and a writable /proc/sys "
                    "(read-only in containers)")
def test_reused_pid_is_not_mistaken_for_the_program(mfe):
    """Kill the program, make the kernel hand its pid to a stranger, and scan again."""
    table = ProcessTable(parse_config(mfe.config(monitor=False)).programs)
    victim = subprocess.Popen([str(mfe.bin / mfe.com), "1000"])
    wait_for(lambda: table.scan()["comunicador"].instance, 5, "the program to be seen")
    assert table.scan()["comunicador"].instance.pid == victim.pid
    victim.kill()
    victim.wait()
    stranger = None
    try:
        for _ in range(50):  # other processes may grab the pid first; try again
            with open("/proc/sys/kernel/ns_last_pid", "w") as last:
                last.write(str(victim.pid - 1))
            candidate = subprocess.Popen(["sleep", "1000"])
            if candidate.pid == victim.pid:
                stranger = candidate
                break
            candidate.kill()
            candidate.wait()
        if stranger is None:
            pytest.skip("could not get the kernel to reuse the pid")
        assert table.scan()["comunicador"].instance is None
    finally:
        if stranger is not None:
            stranger.kill()
            stranger.wait()


def test_validate_warns_when_two_matches_can_select_one_process(tmp_path):
    config = tmp_path / "overlap.yaml"
    config.write_text("programs:\n"
                      "  a: {match: {name: java}, start: /bin/true}\n"
                      "  b: {match: {name: java, cmdline: 'pdv\\.jar'}, start: /bin/true}\n"
                      "  c: {match: {name: Other}, start: /bin/true}\n")
    done = run_cli("validate", "-c", str(config))
    assert done.returncode == 0
    assert done.stderr == (f"zelador: warning: {config}: programs.a and programs.b: their `match:` "
                           "can select the same process (make them differ by name, exe, pidfile "
                           "or user)\n")
    assert run_cli("validate", "--strict", "-c", str(config)).returncode == 78


def test_control_clients_in_quick_succession_are_all_answered(mfe, zelador_factory):
    """A client's 2 s deadline timer once dropped a later client given the same fd number
    (found by a test polling `jobs` every 10 ms: 'Connection reset by peer')."""
    from zelador.runtime.control import ask

    z = zelador_factory(mfe.config()).start()
    answered = 0
    until = time.monotonic() + 3.0
    while time.monotonic() < until:
        assert ask(z.socket, {"cmd": "status"})["programs"]
        answered += 1
    assert answered > 50
