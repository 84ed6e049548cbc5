"""The control socket under bad and heavy use: a poison corpus, a reply larger than the socket
buffer, 50 pollers beside root's own `zelador status`, a client that never reads."""

from __future__ import annotations

import grp
import gzip
import json
import os
import pwd
import select
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from zelador.runtime.control import ask

CORPUS = Path(__file__).parent.parent / "corpus" / "control"


def send_raw(path: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` as it is, then read to EOF (what a careless or hostile client gets)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # turned away before it all went: the reply is still there to read
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                return out
            out += chunk
    return out


def corpus() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(CORPUS.iterdir()):
        if path.name == "README.md":
            continue
        data = path.read_bytes()
        out.append((path.name, gzip.decompress(data) if path.suffix == ".gz" else data))
    return out


def test_poison_corpus_is_answered_and_the_daemon_stays_up(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    entries = corpus()
    assert len(entries) >= 30
    for name, data in entries:
        reply = send_raw(z.socket, data)
        assert reply.endswith(b"\n") and reply.count(b"\n") == 1, (name, reply[:200])
        answer = json.loads(reply)
        assert isinstance(answer, dict), name
        if name != "two-requests":  # its first line is a good status request
            assert answer.get("error"), (name, answer)
            assert len(answer["error"]) < 400, (name, answer["error"])
            assert "Traceback" not in answer["error"]
        assert z.proc is not None and z.proc.poll() is None, f"zelador exited after {name}"
        assert ask(z.socket, {"cmd": "status"})["programs"], name
    assert not z.matching("stopping"), "a bad request stopped a program"
    assert "Traceback" not in z.log.read_text()


def test_deep_json_gets_a_clear_error(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    answer = json.loads(send_raw(z.socket, b"[" * 40000 + b"]" * 40000 + b"\n"))
    assert answer == {"error": "bad request: the request nests 40000 deep (at most 8)",
                      "code": "usage"}
    assert ask(z.socket, {"cmd": "status"})["pid"] == z.proc.pid  # type: ignore[union-attr]


def test_report_with_a_huge_exit_status_is_refused_by_the_cli(zelador_factory, tmp_path):
    z = zelador_factory("jobs:\n  backup: {every: 1h}\nintake: {listen: off}\n").start()
    done = subprocess.run([sys.executable, "-m", "zelador", "report", "backup", "fail",
                           "--exit-code", "99999999999999999999", "--socket", z.socket],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 64, done
    assert "is out of range" in done.stderr.splitlines()[-1]
    raw = send_raw(z.socket, b'{"cmd": "report", "job": "backup", "verb": "fail", '
                   b'"exit_status": 99999999999999999999}\n')  # past the CLI's own check
    assert json.loads(raw) == {"error": "bad request: report: exit_status 99999999999999999999 "
                                        "is out of range (0 to 255)", "code": "usage"}
    assert ask(z.socket, {"cmd": "jobs"})["jobs"][0]["state"] == "NEW"


def many_jobs(count: int) -> str:
    lines = ["intake: {listen: off}", "jobs:"]
    lines += [f"  job_{i:05d}_with_a_rather_long_name_to_make_the_reply_large: {{every: 1h}}"
              for i in range(count)]
    return "\n".join(lines) + "\n"


def test_a_reply_larger_than_the_socket_buffer_arrives_whole(zelador_factory):
    z = zelador_factory(many_jobs(4000)).start(wait_ready=False)
    z.wait_event("ready", timeout=60)
    raw = send_raw(z.socket, b'{"cmd": "jobs"}\n', timeout=30)
    assert len(raw) > 1024 * 1024  # far past a Unix socket's buffer (about 200 kB)
    assert len(json.loads(raw)["jobs"]) == 4000
    assert len(ask(z.socket, {"cmd": "status"}, timeout=30)["jobs"]) == 4000


def test_a_client_that_never_reads_its_large_reply_holds_nothing_up(zelador_factory):
    z = zelador_factory(many_jobs(4000)).start(wait_ready=False)
    z.wait_event("ready", timeout=60)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(z.socket)
        idle.sendall(b'{"cmd": "jobs"}\n')  # and never reads
        for _ in range(5):
            assert len(ask(z.socket, {"cmd": "jobs"}, timeout=30)["jobs"]) == 4000
        hangup = select.poll()
        hangup.register(idle, select.POLLRDHUP)
        wait_for(lambda: hangup.poll(0), 40, "zelador to give up the unread reply (10 s)")
        idle.settimeout(5)
        got = b""
        while True:  # what the socket buffers held, then EOF: the rest was dropped
            chunk = idle.recv(1024 * 1024)
            if not chunk:
                break
            got += chunk
        assert 0 < len(got) < 1024 * 1024 and not got.endswith(b"\n")


def test_root_status_works_while_50_clients_poll(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start()
    stop = threading.Event()
    failures: list[str] = []
    polls = [0]

    def poll() -> None:
        while not stop.is_set():
            try:
                ask(z.socket, {"cmd": "status"}, timeout=20)
                polls[0] += 1
            except Exception as exc:  # counted: the test fails on any
                failures.append(repr(exc))

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(50)]
    for thread in pollers:
        thread.start()
    try:
        wait_for(lambda: polls[0] > 200, 60, "the pollers to get going")
        for _ in range(5):
            done = subprocess.run([sys.executable, "-m", "zelador", "status", "--socket",
                                   z.socket], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done
            assert "comunicador" in done.stdout
    finally:
        stop.set()
        for thread in pollers:
            thread.join(30)
    assert not failures, failures[:3]


# --- control.group: a real unprivileged user, created here and removed after ---------------------

CLIENT = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print("connect:", exc.strerror)
    sys.exit(0)
try:
    sock.sendall(sys.argv[2].encode() + b"\\n")
except BrokenPipeError:  # turned away at once: the reply is there to read
    pass
out = b""
while True:
    try:
        chunk = sock.recv(65536)
    except ConnectionResetError:  # closed with our request unread: its reply came first
        break
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode())
"""


@pytest.fixture
def local_users():
    """A group, a member of it and a user who is not, all removed after the test."""
    tag = uuid.uuid4().hex[:6]
    group, member, other = f"zctl{tag}", f"zmem{tag}", f"zoth{tag}"
    made: list[tuple[str, str]] = []
    try:
        subprocess.run(["groupadd", "--system", group], check=True)
        made.append(("groupdel", group))
        for name, groups in ((member, ["-G", group]), (other, [])):
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", "-U", *groups, name], check=True)
            made.append(("userdel", name))
        yield group, pwd.getpwnam(member), pwd.getpwnam(other)
    finally:
        for command, name in reversed(made):
            subprocess.run([command, name], check=False)


def as_user(user: pwd.struct_passwd, path: str, request: str, extra: list[int]) -> Any:
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", CLIENT, path, request],
                          user=user.pw_uid, group=user.pw_gid, extra_groups=extra,
                          capture_output=True, text=True, timeout=30, cwd="/")
    assert done.returncode == 0, done.stderr
    text = done.stdout.strip()
    return text if text.startswith("connect:") else json.loads(text)


@pytest.mark.skipif(os.geteuid() != 0, reason="creates users: needs root")
def test_control_group_member_can_do_each_documented_verb_and_nothing_more(
        mfe, zelador_factory, local_users, tmp_path):
    group, member, other = local_users
    gid = grp.getgrnam(group).gr_gid
    folder = Path(f"/tmp/zelador-ctl-{uuid.uuid4().hex[:8]}")
    path = str(folder / "control.sock")
    config = mfe.config() + (f"control: {{socket: {path}, group: {group}}}\n"
                             "jobs:\n  backup: {every: 1h}\nintake: {listen: off}\n")
    try:
        z = zelador_factory(config).start()
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"

        def program(name: str) -> Any:  # as root
            return next(p for p in ask(path, {"cmd": "status"})["programs"] if p["name"] == name)

        def ask_as_member(request: dict[str, Any]) -> Any:
            return as_user(member, path, json.dumps(request), [gid])

        # what docs/configuration.md says a member may do: each verb, one by one
        assert [p["name"] for p in ask_as_member({"cmd": "status"})["programs"]] == [
            "comunicador", "monitor"]
        assert "checks" in ask_as_member({"cmd": "checks"})
        assert ask_as_member({"cmd": "jobs"})["jobs"][0]["name"] == "backup"
        reply = ask_as_member({"cmd": "report", "job": "backup", "verb": "fail",
                               "exit_status": 3})
        assert reply["job"]["state"] == "FAIL"
        old = program("comunicador")["pid"]
        assert ask_as_member({"cmd": "restart", "program": "comunicador"})["ok"] is True
        who = f"uid {member.pw_uid} ({member.pw_name})"
        assert f"restart requested by {who}" in z.wait_event("stopping", "comunicador")["message"]
        wait_for(lambda: program("comunicador")["pid"] not in (None, old), 20, "the restart")
        assert ask_as_member({"cmd": "stop", "program": "monitor"})["ok"] is True
        wait_for(lambda: program("monitor")["state"] == "STOPPED", 20, "monitor stopped")
        assert ask_as_member({"cmd": "start", "program": "monitor"})["ok"] is True
        wait_for(lambda: program("monitor")["state"] == "RUNNING", 20, "monitor started")

        # ... and nothing more: no other verb, no other field, no program outside the config
        for request, error in (
                ({"cmd": "reload"}, "permission denied: reload is for root"),
                ({"cmd": "shutdown"}, "bad request: unknown request 'shutdown'"),
                ({"cmd": "stop", "program": "/bin/sh"}, "no program '/bin/sh'"),
                ({"cmd": "status", "config": "/etc/shadow"},
                 "bad request: status: unknown field 'config'"),
                ({"cmd": "restart", "program": "comunicador", "_by": "uid 0 (root)"},
                 "bad request: restart: unknown field '_by'"),
                ({"cmd": "report", "job": "backup", "verb": "fail", "exit_status": 256},
                 "bad request: report: exit_status 256 is out of range")):
            assert ask_as_member(request)["error"].startswith(error), request

        # a user outside the group cannot connect; were the socket's mode widened by mistake,
        # zelador still turns them away by their credentials
        assert as_user(other, path, '{"cmd": "status"}', []) == "connect: Permission denied"
        os.chmod(path, 0o666)
        reply = as_user(other, path, '{"cmd": "stop", "program": "comunicador"}', [])
        assert reply == {"error": f"permission denied: uid {other.pw_uid} is neither root nor "
                                  "in control.group", "code": "denied"}
        assert program("comunicador")["state"] == "RUNNING"
        assert z.proc is not None and z.proc.poll() is None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
