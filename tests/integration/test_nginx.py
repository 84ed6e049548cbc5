"""Debian's nginx (a daemonizing master and its workers) supervised with the match a user writes
first, `{name: nginx}`: the workers are the master's family, never duplicates; after kill -9 of
the master its orphaned workers (still holding the port) are stopped before the restart; and a
binary upgrade (USR2, then QUIT of the old master) is followed through the pidfile."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, pids_named, wait_for, with_suppress_kill

NGINX = "/usr/sbin/nginx"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(NGINX), reason="Debian's nginx is not installed "
                       "(scripts/setup.sh installs nginx-light)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="nginx's master runs as root"),
]


@pytest.fixture
def nginx_conf(tmp_path: Path):
    if pids_named("nginx"):
        pytest.skip("another nginx runs on this machine; the test matches {name: nginx}")
    port = free_port()
    root = tmp_path / "nginx"
    (root / "logs").mkdir(parents=True)
    conf = root / "nginx.conf"
    conf.write_text(f"""daemon on;
master_process on;
worker_processes 2;
pid {root}/nginx.pid;
error_log {root}/logs/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }}
}}
""")
    try:
        yield conf, port
    finally:
        for pid in pids_named("nginx"):
            with_suppress_kill(pid)
        wait_for(lambda: not pids_named("nginx"), 10, "nginx gone after the test")


def read_pid(pidfile: Path) -> int | None:
    """The pid in nginx's pidfile, None while it is missing or half written (nginx renames the
    old one to .oldbin before the new master writes its own)."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
        return bytes(answer.read())


def config(conf: Path, match: str) -> str:
    return f"""programs:
  web:
    match: {match}
    start: [{NGINX}, -c, {conf}]
    start_timeout: 10s
    stop: {{signal: QUIT, timeout: 3s}}
    duplicates: stop
"""


def rescan(z) -> None:
    count = len(z.matching("reloaded")) + 1
    z.signal(signal.SIGHUP)
    z.wait_event("reloaded", count=count)


def test_workers_are_family_and_orphans_are_stopped_before_the_restart(nginx_conf, zelador_factory):
    conf, port = nginx_conf
    z = zelador_factory(config(conf, "{name: nginx}")).start()
    master = int(z.wait_event("started", "web")["pid"])
    workers = wait_for(lambda: len(pids_named("nginx")) == 3 and
                       sorted(set(pids_named("nginx")) - {master}), 10, "two workers")
    rescan(z)
    assert not z.matching("duplicate")  # workers are family, not second instances
    assert z.program("web")["family"] == 2 and z.program("web")["pid"] == master, z.status()
    assert sorted(set(pids_named("nginx")) - {master}) == workers  # nobody SIGTERMed them
    assert get(port) == b"ok\n"

    os.kill(master, signal.SIGKILL)
    stopping = z.wait_event("stopping", "web")
    assert "left behind" in stopping["message"]
    assert all(str(w) in stopping["message"] for w in workers)
    new_master = int(z.wait_event("started", "web", count=2)["pid"])
    assert new_master != master
    wait_for(lambda: not set(workers) & set(pids_named("nginx")), 5, "old workers gone")
    assert get(port) == b"ok\n"  # the new master could bind the port
    assert not z.matching("start_failed")


def test_binary_upgrade_is_followed_through_the_pidfile(nginx_conf, zelador_factory):
    conf, port = nginx_conf
    pidfile = conf.parent / "nginx.pid"
    z = zelador_factory(config(conf, f"{{pidfile: {pidfile}}}")).start()
    old = int(z.wait_event("started", "web")["pid"])
    os.kill(old, signal.SIGUSR2)  # start a new master from the (same) binary
    new = wait_for(lambda: (pid := read_pid(pidfile)) != old and pid, 10,
                   "the new master's pidfile")
    rescan(z)
    wait_for(lambda: z.program("web")["pid"] == new, 5, "zelador to follow the pidfile")
    os.kill(old, signal.SIGQUIT)  # retire the old master
    wait_for(lambda: old not in pids_named("nginx"), 10, "the old master to go")
    rescan(z)
    assert z.program("web")["pid"] == new and z.program("web")["state"] == "RUNNING"
    assert not z.matching("restarting") and not z.matching("start_failed")
    assert get(port) == b"ok\n"


def test_the_daemonizing_start_is_never_the_instance_and_its_master_never_a_duplicate(
        nginx_conf, zelador_factory):
    """`start: nginx` forks the master and exits: that pre-fork process (named nginx too) is the
    start, not the program, and the master below it is the instance, never "a second one"."""
    conf, port = nginx_conf
    pidfile = conf.parent / "nginx.pid"
    # stable: 1s, so each master can run past it quickly (a death, not a failed start)
    z = zelador_factory(config(conf, "{name: nginx}") + "    restart: {stable: 1s}\n").start()
    for n in range(1, 4):
        master = int(z.wait_event("started", "web", count=n)["pid"])
        assert "exited with status" not in z.matching("started", "web")[-1]["message"]
        wait_for(lambda m=master: read_pid(pidfile) == m, 10, "the pidfile to name the master")
        assert get(port) == b"ok\n"
        born = time.monotonic()
        wait_for(lambda b=born: time.monotonic() - b > 1.2, 3, "the master past `stable`")
        os.kill(master, signal.SIGKILL)
    z.wait_event("started", "web", count=4)
    assert not z.matching("duplicate"), z.matching("duplicate")
    rescan(z)
    assert z.program("web")["pid"] == read_pid(pidfile) and get(port) == b"ok\n"
