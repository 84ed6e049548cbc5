"""A program is its whole process tree (issue 21): stop, restart, a health check's restart and a
duplicate's stop leave nothing of the old tree (asserted on /proc, a TERM-deaf worker included);
a failed start leaves nothing; a vendor's respawn loop is adopted, never doubled; a stale
pidfile is never adopted. Default settings unless the test is about one; no systemd here."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import pids_named, wait_for, with_suppress_kill
from zelador.cli import main

# the launcher: a copy of bash under the program's name, with three workers (sleep), the last
# deaf to SIGTERM; it waits for them (a parent that reaps, unlike the stubborn MFE's)
WORKERS = ('sleep infinity & sleep infinity & (trap "" TERM; exec sleep infinity) & '
           'while :; do wait; done')


@dataclass
class Tree:
    root: Path
    name: str  # the launcher's process name (what `match` names)

    @property
    def binary(self) -> Path:
        return self.root / self.name

    @property
    def script(self) -> Path:
        return self.root / f"start-{self.name}.sh"

    def config(self, extra: str = "") -> str:
        return f"""programs:
  tree:
    match: {{name: {self.name}}}
    start: {self.script}
{extra}"""

    def run_by_hand(self, log: Path) -> subprocess.Popen[bytes]:
        """A second copy, started beside zelador's (its parent: this test, never stopped); it
        writes each worker's pid to `log` as it forks it."""
        # the workers first, under plain bash; then it execs into the program (the workers stay
        # its children): the tree is whole before zelador can see a match
        forks = (f'sleep infinity & echo $! >> {log}; sleep infinity & echo $! >> {log}; '
                 f'(trap "" TERM; exec sleep infinity) & echo $! >> {log}; ')
        return subprocess.Popen(
            ["bash", "-c", forks + f"exec {self.binary} -c 'sleep infinity; :'"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def lay_out(root: Path, name: str, launcher: str) -> Tree:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for parent in list(root.parents)[:-1]:
        if str(parent).startswith("/tmp/"):
            parent.chmod(parent.stat().st_mode | 0o755)
    shutil.copy(shutil.which("bash") or "/bin/bash", root / name)
    (root / name).chmod(0o755)
    script = root / f"start-{name}.sh"
    script.write_text(f"#!/bin/sh\ncd {root} || exit 1\n{launcher}\n")
    script.chmod(0o755)
    return Tree(root, name)


@pytest.fixture
def tree(tmp_path: Path):
    name = f"Tr{uuid.uuid4().hex[:6]}"
    laid = lay_out(tmp_path / "tree", name,
                   f"nohup ./{name} -c '{WORKERS}' >/dev/null 2>&1 &")
    try:
        yield laid
    finally:
        kill_all_below(name)


def kill_all_below(name: str) -> None:
    for pid in pids_named(name):
        for child in descendants(pid):
            with_suppress_kill(child)
        with_suppress_kill(pid)


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def running(pid: int) -> bool:
    """On /proc and not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def tree_of(pid: int) -> list[int]:
    """The launcher and its three workers, once all are there."""
    found = wait_for(lambda: len(descendants(pid)) >= 3 and descendants(pid), 10, "3 workers")
    return [pid, *found]


def none_left(pids: list[int], timeout: float = 10.0) -> None:
    wait_for(lambda: not [p for p in pids if running(p)], timeout,
             f"none of {pids} running ({[p for p in pids if running(p)]} still are)")


def test_stop_leaves_nothing_of_the_tree_a_term_deaf_worker_included(tree, zelador_factory):
    z = zelador_factory(tree.config("    stop: {timeout: 2s}\n")).start()
    pid = int(z.wait_event("started", "tree")["pid"])
    old = tree_of(pid)
    assert main(["stop", "tree", "--socket", z.socket]) == 0  # returns once it is STOPPED
    z.wait_event("stopped", "tree")
    none_left(old, 1)  # already gone when zelador says stopped
    assert z.program("tree")["state"] == "STOPPED" and not pids_named(tree.name)
    assert z.matching("stop_timeout", "tree")  # the deaf worker: SIGKILL after stop.timeout


def test_restart_starts_the_new_tree_only_once_the_old_one_is_gone(tree, zelador_factory):
    z = zelador_factory(tree.config("    stop: {timeout: 2s}\n")).start()
    pid = int(z.wait_event("started", "tree")["pid"])
    old = tree_of(pid)
    assert main(["restart", "tree", "--socket", z.socket]) == 0
    new = int(z.wait_event("started", "tree", count=2)["pid"])
    assert not [p for p in old if running(p)], "the new instance started beside the old tree"
    assert new not in old and len(tree_of(new)) == 4
    wait_for(lambda: pids_named(tree.name) == [new], 5, "one launcher (a subshell forked "
             "for a worker carries its name until it execs)")


def test_a_health_restart_stops_the_whole_tree(tree, zelador_factory, tmp_path: Path):
    flag = tmp_path / "healthy"
    flag.write_text("yes")
    health = (f"    health: {{command: [/bin/sh, -c, 'test -e {flag}'], every: 1s, fails: 1}}\n"
              "    stop: {timeout: 2s}\n")
    z = zelador_factory(tree.config(health)).start()
    pid = int(z.wait_event("started", "tree")["pid"])
    old = tree_of(pid)
    flag.unlink()
    z.wait_event("stopping", "tree", timeout=20)
    flag.write_text("yes")
    new = int(z.wait_event("started", "tree", count=2, timeout=20)["pid"])
    assert not [p for p in old if running(p)] and new not in old
    wait_for(lambda: pids_named(tree.name) == [new], 5, "one launcher (a subshell forked "
             "for a worker carries its name until it execs)")


def test_a_duplicates_stop_leaves_nothing_of_its_tree_and_spares_its_parent(
        tree, zelador_factory, tmp_path: Path):
    z = zelador_factory(tree.config("    duplicates: stop\n    stop: {timeout: 2s}\n")).start()
    pid = int(z.wait_event("started", "tree")["pid"])
    mine = tree_of(pid)
    log = tmp_path / "workers"
    log.write_text("")
    dup = tree.run_by_hand(log)
    try:
        z.wait_event("duplicate", "tree")
        workers = [int(p) for p in log.read_text().split()]
        assert len(workers) == 3
        none_left([dup.pid, *workers])
        assert dup.wait(5) is not None  # (this test is its parent: it was not stopped)
        assert all(running(p) for p in mine)  # the program's own tree untouched
        assert z.program("tree")["pid"] == pid
        wait_for(lambda: z.program("tree")["duplicates"] == [], 5, "status to list live pids")
    finally:
        dup.kill()
        dup.wait()


def test_a_failed_start_leaves_nothing_behind(tmp_path: Path, zelador_factory):
    """The script returns at once; its daemon execs into the program after start_timeout: the
    start fails, and what it started is stopped, so the retry never makes a second copy."""
    name = f"Lt{uuid.uuid4().hex[:6]}"
    spawned = tmp_path / "spawned"
    late = lay_out(tmp_path / "late", name,
                   f"nohup sh -c 'sleep 2; exec ./{name} -c \"sleep infinity\"' >/dev/null 2>&1 &"
                   f"\necho $! >> {spawned}")
    try:
        z = zelador_factory(late.config("    start_timeout: 1s\n")).start()
        z.wait_event("start_failed", "tree", timeout=15)
        first = int(spawned.read_text().split()[0])
        assert not running(first)  # stopped with the failed start, before any retry
        assert "stopped what it started" in z.matching("start_failed", "tree")[0]["message"]
        wait_for(lambda: len(spawned.read_text().split()) >= 2, 15, "the retry")
        z.wait_event("start_failed", "tree", count=2, timeout=15)
        assert len([p for p in map(int, spawned.read_text().split()) if running(p)]) <= 1
        assert len(pids_named(name)) <= 1
    finally:
        z.stop()  # first: it would start again what is killed below
        kill_all_below(name)
        for pid in map(int, spawned.read_text().split()) if spawned.exists() else ():
            with_suppress_kill(pid)


def test_a_vendor_respawn_loop_stays_one_loop_and_one_daemon_across_20_kills(tmp_path: Path,
                                                                          zelador_factory):
    name = f"Vd{uuid.uuid4().hex[:6]}"
    loop = lay_out(tmp_path / "vendor", name,
                   f"nohup sh -c 'while :; do ./{name} -c \"sleep infinity; :\"; sleep 1; done' "
                   ">/dev/null 2>&1 &")
    try:
        z = zelador_factory(loop.config()).start()
        pid = int(z.wait_event("started", "tree")["pid"])
        (shell,) = loops(name)
        for n in range(1, 21):
            os.kill(pid, signal.SIGKILL)
            found = z.wait_event("found", "tree", count=n, timeout=15)
            pid = int(found["pid"])
            assert loops(name) == [shell] and pids_named(name) == [pid]
        assert len(z.matching("starting", "tree") + z.matching("restarting", "tree")) == 1
        assert not z.matching("duplicate", "tree")
        assert z.program("tree")["pid"] == pid and z.program("tree")["restarts"] == 20
    finally:
        z.stop()  # first: it would start again what is killed below
        for shell in loops(name):
            with_suppress_kill(shell)
        kill_all_below(name)


def loops(name: str) -> list[int]:
    return sorted(p.pid for p in psutil.process_iter(["name", "cmdline", "status"])
                  if p.info["name"] == "sh" and p.info["status"] != psutil.STATUS_ZOMBIE
                  and f"./{name}" in " ".join(p.info["cmdline"] or ()))


def test_a_stale_pidfile_naming_a_later_process_is_never_adopted(tmp_path: Path,
                                                                 zelador_factory):
    name = f"Pf{uuid.uuid4().hex[:6]}"
    pidfile = tmp_path / "prog.pid"
    laid = lay_out(tmp_path / "pf", name,
                   f"nohup ./{name} -c 'echo $$ > {pidfile}; exec sleep infinity' "
                   ">/dev/null 2>&1 &")
    stranger = subprocess.Popen(["sleep", "infinity"])  # started after the file was written
    try:
        pidfile.write_text(f"{stranger.pid}\n")
        past = time.time() - 3600
        os.utime(pidfile, (past, past))
        z = zelador_factory(f"""programs:
  tree:
    match: {{pidfile: {pidfile}}}
    start: {laid.script}
""").start()
        started = z.wait_event("started", "tree")
        assert int(started["pid"]) != stranger.pid and running(stranger.pid)
        assert not z.matching("found", "tree")  # never "already running" as the stranger
        assert int(pidfile.read_text()) == int(started["pid"])
    finally:
        z.stop()  # first: it would start again what is killed below
        stranger.kill()
        stranger.wait()
        if pidfile.exists() and pidfile.read_text().strip().isdigit():
            with_suppress_kill(int(pidfile.read_text()))
        kill_all_below(name)


def test_validate_warns_that_a_pidfile_alone_cannot_tell_a_reused_pid(tmp_path: Path):
    config = tmp_path / "pidfile.yaml"
    config.write_text("programs:\n"
                      "  a: {match: {pidfile: /run/a.pid}, start: /bin/true}\n"
                      "  b: {match: {pidfile: /run/b.pid, name: b}, start: /bin/true}\n")
    done = subprocess.run([sys.executable, "-m", "zelador", "validate", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"zelador: warning: {config}: programs.a.match: a pidfile alone "
                           "cannot tell a reused pid from the program (add name: or exe:)\n")


def test_a_restart_stops_the_vendor_loop_too_never_two_loops(tmp_path: Path, zelador_factory):
    name = f"Vr{uuid.uuid4().hex[:6]}"
    loop = lay_out(tmp_path / "vendor", name,
                   f"nohup sh -c 'while :; do ./{name} -c \"sleep infinity; :\"; sleep 1; done' "
                   ">/dev/null 2>&1 &")
    try:
        z = zelador_factory(loop.config()).start()
        z.wait_event("started", "tree")
        (first,) = loops(name)
        for n in range(2, 5):
            assert main(["restart", "tree", "--socket", z.socket]) == 0
            pid = int(z.wait_event("started", "tree", count=n)["pid"])
            (shell,) = wait_for(lambda: len(loops(name)) == 1 and loops(name), 5, "one loop")
            assert shell != first and not running(first)
            first = shell
            time.sleep(1.5)  # (the old loop's `sleep 1`: it would have respawned by now)
            assert loops(name) == [shell] and pids_named(name) == [pid]
    finally:
        z.stop()  # first: it would start again what is killed below
        for shell in loops(name):
            with_suppress_kill(shell)
        kill_all_below(name)


def test_a_workers_death_is_journaled_and_the_tree_shrinks(tree, zelador_factory):
    z = zelador_factory(tree.config()).start()
    pid = int(z.wait_event("started", "tree")["pid"])
    workers = tree_of(pid)[1:]
    wait_for(lambda: z.program("tree")["family"] == 3, 10, "a tree of 4")
    os.kill(workers[0], signal.SIGSEGV)
    told = z.wait_event("family_member_exited", "tree")
    assert told["pid"] == str(workers[0]) and told["exit_signal"] == "11", told
    assert "SIGSEGV" in told["message"] and f"pid {pid}" in told["message"]
    wait_for(lambda: z.program("tree")["family"] == 2, 10, "the tree to shrink")
    assert z.program("tree")["pid"] == pid and not z.matching("exited", "tree")


def test_a_children_rule_alerts_when_the_tree_has_too_few_workers(tree, zelador_factory):
    z = zelador_factory(tree.config(
        "    resources: {every: 1s, children: {below: 3, action: alert}}\n")).start()
    pid = int(z.wait_event("started", "tree")["pid"])
    workers = tree_of(pid)[1:]
    os.kill(workers[0], signal.SIGKILL)
    failed = z.wait_event("check_failed", timeout=15)
    assert failed["check"] == "tree.children" and "< 3" in failed["message"], failed
    assert failed["value"] == "2" and z.program("tree")["pid"] == pid


def test_a_failed_start_stops_a_daemon_that_left_its_session_too(tmp_path: Path, zelador_factory):
    """The daemon calls setsid() and outlives its script: neither the script's session nor its
    descendants hold it any more (no systemd scope here); what the start forked does."""
    name = f"Ls{uuid.uuid4().hex[:6]}"
    spawned = tmp_path / "spawned"
    late = lay_out(tmp_path / "late", name,
                   f"nohup setsid sh -c 'echo $$ >> {spawned}; sleep 3; exec ./{name} -c "
                   f"\"sleep infinity; :\"' >/dev/null 2>&1 &")
    z = zelador_factory(late.config("    start_timeout: 1s\n")).start()
    try:
        z.wait_event("start_failed", "tree", timeout=15)
        first = int(wait_for(lambda: spawned.exists() and spawned.read_text().split(), 5,
                             "the daemon's pid")[0])
        wait_for(lambda: not running(first), 5, f"the setsid'd daemon {first} stopped")
        z.wait_event("start_failed", "tree", count=2, timeout=15)
        assert len([p for p in map(int, spawned.read_text().split()) if running(p)]) <= 1
    finally:
        z.stop()
        kill_all_below(name)
        for pid in map(int, spawned.read_text().split()) if spawned.exists() else ():
            with_suppress_kill(pid)
