"""Checks end to end: the real daemon watching real processes that hang, leak, burn CPU and hold
fds; a real local HTTP server that is slow, hangs, fails, answers too much or garbage, or lists
miners some of which went quiet; a real small filesystem filling up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import Zelador, free_port, wait_for
from zelador.runtime.control import ask

PROGS = Path(__file__).parents[1] / "checkprogs.py"



def tagged(kind: str, tag: str) -> list[int]:
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if f"checkprogs.py {kind} {tag}" in " ".join(cmd) and \
                proc.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(proc.pid)
    return out


@pytest.fixture
def tag() -> Iterator[str]:
    name = uuid.uuid4().hex[:8]
    yield name
    for proc in psutil.process_iter(["cmdline"]):
        if name in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def program(name: str, kind: str, tag: str, extra: str, port: int = 0) -> str:
    return f"""  {name}:
    match: {{cmdline: "checkprogs.py {kind} {tag}"}}
    start: "nohup {sys.executable} {PROGS} {kind} {tag} {port} >/dev/null 2>&1 &"
    shell: true
    start_timeout: 10s
    stop: {{timeout: 2s}}
{extra}"""


def checks(zel: Zelador) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in ask(zel.socket, {"cmd": "checks"})["checks"]}


@pytest.mark.parametrize("probe", ["tcp", "http"])
def test_a_hung_program_is_restarted_by_its_health_check(tmp_path: Path, tag: str,
                                                         probe: str) -> None:
    """Alive but not answering (port closed / requests never answered) and deaf to SIGTERM:
    restarted through the engine, killed after stop.timeout, healthy again."""
    port = free_port()
    target = f'tcp: "127.0.0.1:{port}"' if probe == "tcp" else f'http: "http://127.0.0.1:{port}/"'
    health = f"    health: {{{target}, every: 1s, timeout: 1s, fails: 2, start_after: 2s}}\n"
    zel = Zelador(tmp_path, "programs:\n" + program("comunicador", "serve", tag, health, port))
    zel.start()
    try:
        zel.wait_event("started", "comunicador")
        (pid,) = wait_for(lambda: tagged("serve", tag), 10, "the server")
        wait_for(lambda: checks(zel)["comunicador.health"]["state"] == "OK", 15, "healthy")
        os.kill(pid, signal.SIGUSR2 if probe == "tcp" else signal.SIGUSR1)  # hangs, stays alive
        failed = zel.wait_event("check_failed", timeout=15)
        assert failed["check"] == "comunicador.health" and failed["program"] == "comunicador"
        assert "restarting comunicador" in failed["message"]
        zel.wait_event("stop_timeout", "comunicador", timeout=15)  # it ignored SIGTERM
        zel.wait_event("started", "comunicador", count=2, timeout=20)
        new = wait_for(lambda: [p for p in tagged("serve", tag) if p != pid], 10, "a new one")
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert len(new) == 1
        recovered = zel.wait_event("check_recovered", timeout=15)
        assert recovered["check"] == "comunicador.health"
        listing = subprocess.run([sys.executable, "-m", "zelador", "checks", "--socket",
                                  zel.socket], capture_output=True, text=True)
        assert listing.returncode == 0 and "comunicador.health" in listing.stdout
    finally:
        zel.stop()


def test_a_leaking_program_is_restarted_and_a_cpu_burner_and_fd_hog_alerted(
        tmp_path: Path, tag: str) -> None:
    config = "programs:\n" + program("leaky", "leak", tag, """    resources:
      every: 1s
      memory: {above: 60MB, for: 2 cycles, action: restart}
""") + program("burner", "burn", tag, """    resources:
      every: 1s
      cpu: {above: 50%, for: 2 cycles}
""") + program("hoarder", "fds", tag, """    resources:
      every: 1s
      fds: {above: 200}
""")
    zel = Zelador(tmp_path, config).start()
    try:
        leaky = wait_for(lambda: tagged("leak", tag), 10, "the leaker")
        mem = wait_for(lambda: [e for e in zel.matching("check_failed")
                                if e["check"] == "leaky.memory"], 30, "memory rule")[0]
        assert float(mem["value"]) > 60e6 and mem["threshold"] == "6e+07"
        assert mem["action"] == "restart" and "restarting leaky" in mem["message"]
        wait_for(lambda: [p for p in tagged("leak", tag) if p not in leaky], 20, "restarted")
        again = wait_for(lambda: [e for e in zel.matching("check_failed")
                                  if e["check"] == "leaky.memory"][1:], 30, "leaks again")[0]
        assert "again, after the restart" in again["message"]  # restarted once more
        cpu = wait_for(lambda: [e for e in zel.matching("check_failed")
                                if e["check"] == "burner.cpu"], 20, "cpu rule")[0]
        assert float(cpu["value"]) > 50 and cpu["action"] == "alert"
        fds = wait_for(lambda: [e for e in zel.matching("check_failed")
                                if e["check"] == "hoarder.fds"], 20, "fds rule")[0]
        assert float(fds["value"]) >= 300
        state = checks(zel)
        assert state["burner.cpu"]["state"] == "FAILING"
        assert state["hoarder.fds"]["threshold"] == "200"
        status = subprocess.run([sys.executable, "-m", "zelador", "status", "--socket",
                                 zel.socket], capture_output=True, text=True)
        assert "burner.cpu" in status.stdout and "FAILING" in status.stdout
    finally:
        zel.stop()


class Api:
    """A local HTTP API with seed 003's shape, and every way an API goes wrong."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.workers: list[dict[str, Any]] = []
        self.hung: list[int] = []  # one entry per request held (list.append: thread-safe)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mode = owner.mode
                if mode == "hang":
                    owner.hung.append(1)
                if mode in ("hang", "slow"):
                    time.sleep(3600 if mode == "hang" else 3)
                if mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = {"huge": b"x" * (2 * 1024 * 1024), "garbage": b"<html>oops</html>"}.get(
                    mode) or json.dumps({"data": {"workers": owner.workers}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/workers"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_check_fails_clearly_and_each_quiet_miner_is_its_own_problem(
        tmp_path: Path) -> None:
    api = Api()
    now = time.time()
    api.workers = [{"name": "rig-01", "last_seen": now}, {"name": "rig-02", "last_seen": now - 900},
                   {"name": "rig-03", "last_seen": now - 9 * 3600}]
    config = f"""checks:
  miners:
    every: 1s
    http: {{url: "{api.url}", timeout: 1s}}
    json: {{items: data.workers, key: name, time: last_seen, stale_after: 10m, ignore_after: 8h}}
jobs: {{backup: {{every: 1h}}}}
intake: {{listen: off}}
"""
    zel = Zelador(tmp_path, config).start()
    try:
        stale = zel.wait_event("check_failed", timeout=15)
        assert stale["check"] == "miners/rig-02" and "not seen for 15m" in stale["message"]
        assert not [e for e in zel.matching("check_failed") if e["check"] == "miners/rig-03"]
        api.workers[1]["last_seen"] = time.time()  # rig-02 is back
        back = zel.wait_event("check_recovered", timeout=15)
        assert back["check"] == "miners/rig-02" and "seen again" in back["message"]
        def about_miners(kind: str) -> list[dict[str, str]]:
            return [e for e in zel.matching(kind) if e["check"] == "miners"]

        for mode, reason in (("slow", "no answer within 1s"), ("fail", "HTTP 500"),
                             ("huge", "larger than 1 MB"), ("garbage", "not JSON"),
                             ("hang", "no answer within 1s")):
            seen = len(about_miners("check_failed"))
            api.mode = mode
            failed = wait_for(lambda n=seen: about_miners("check_failed")[n:], 15, mode)[0]
            assert reason in failed["message"], failed
            listing = subprocess.run([sys.executable, "-m", "zelador", "checks", "--socket",
                                      zel.socket], capture_output=True, text=True)
            assert listing.returncode == 3 and reason in listing.stdout
            api.mode = "ok"
            wait_for(lambda n=seen: len(about_miners("check_recovered")) == n + 1, 15, "back")
    finally:
        zel.stop()
        api.close()


def test_checks_against_a_hanging_server_never_delay_a_restart(tmp_path: Path, tag: str) -> None:
    api = Api()
    api.mode = "hang"
    port = free_port()
    many = "".join(f'  c{i}: {{every: 1s, http: {{url: "{api.url}", timeout: 5s}}}}\n'
                   for i in range(50))
    zel = Zelador(tmp_path, "programs:\n" + program("comunicador", "serve", tag, "", port) +
                  "checks:\n" + many).start()
    try:
        zel.wait_event("started", "comunicador")
        (pid,) = wait_for(lambda: tagged("serve", tag), 10, "the server")
        time.sleep(1.5)  # every worker is now stuck on the hanging server
        assert sum(1 for c in checks(zel).values() if c["state"] == "PENDING") >= 40
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("started", "comunicador", count=2, timeout=5)
    finally:
        zel.stop()
        api.close()


def test_a_hanging_health_command_is_killed_with_its_group(tmp_path: Path, tag: str) -> None:
    script = tmp_path / f"probe-{tag}.sh"
    script.write_text(f"#!/bin/sh\nsleep 300 &\nexec sleep 301 # {tag}\n")
    script.chmod(0o755)
    health = f"    health: {{command: [{script}], every: 1s, timeout: 1s, fails: 1, " \
             "start_after: 0s, action: alert}\n"
    zel = Zelador(tmp_path, "programs:\n" + program("comunicador", "serve", tag, health,
                                                    free_port())).start()
    try:
        failed = zel.wait_event("check_failed", timeout=15)
        assert "ran past 1s and was killed" in failed["message"]
        assert failed["action"] == "alert"
        time.sleep(0.5)
        leftover = [p.pid for p in psutil.process_iter(["cmdline"])
                    if (p.info["cmdline"] or [])[:2] in (["sleep", "300"], ["sleep", "301"])
                    and p.ppid() in (os.getpid(), zel.proc.pid if zel.proc else -1)]
        assert leftover == []
    finally:
        zel.stop()


def test_a_filling_disk_is_a_system_problem_until_space_is_freed(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        config = f"""system:
  every: 1s
  small_disk: {{disk: {mount}, above: 50%}}
  load_per_core: {{load: 1, per_core: true, above: 1000}}
jobs: {{backup: {{every: 1h}}}}
intake: {{listen: off}}
"""
        zel = Zelador(tmp_path, config).start()
        try:
            wait_for(lambda: checks(zel)["small_disk"]["state"] == "OK", 10, "a first sample")
            (mount / "fill").write_bytes(b"\0" * 800 * 1024)
            failed = zel.wait_event("check_failed", timeout=10)
            assert failed["check"] == "small_disk" and float(failed["value"]) > 50
            assert f"disk {mount}" in failed["message"]
            (mount / "fill").unlink()
            zel.wait_event("check_recovered", timeout=10)
            assert checks(zel)["load_per_core"]["state"] == "OK"
        finally:
            zel.stop()
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_failing_check_is_not_delayed_by_50_hung_ones(tmp_path: Path) -> None:
    """Issue 19: 8 shared worker threads let 8 hung checks (timeout 60 s) hold a failing check
    back by a minute. Each check has its own thread now: the canary, whose target is really
    down, fails within its own interval + timeout while 50 checks hang beside it."""
    api, target = Api(), Api()
    api.mode = "hang"
    hung = "".join(f'  hung{i}: {{every: 1s, http: {{url: "{api.url}", timeout: 60s}}}}\n'
                   for i in range(50))
    canary = f'  canary: {{every: 2s, http: {{url: "{target.url}", timeout: 1s}}}}\n'
    zel = Zelador(tmp_path, "checks:\n" + hung + canary + "jobs: {backup: {every: 1h}}\n"
                  "intake: {listen: off}\n")
    try:
        zel.start()
        wait_for(lambda: len(api.hung) >= 50, 30, "the 50 checks to hang on the server")
        wait_for(lambda: checks(zel)["canary"]["state"] == "OK", 15, "the canary healthy")
        target.close()  # its target is really down now
        begun = time.monotonic()
        failed = wait_for(lambda: [e for e in zel.matching("check_failed")
                                   if e["check"] == "canary"], 30, "the canary to fail")[0]
        took = time.monotonic() - begun
        assert "Connection refused" in failed["message"], failed
        assert took < 2 + 1 + 5, f"the canary took {took:.1f}s to fail"  # the old way: ~60 s
        state = checks(zel)
        assert sum(1 for name, c in state.items()
                   if name.startswith("hung") and c["state"] == "PENDING") == 50
        threads = psutil.Process(zel.proc.pid).num_threads()  # type: ignore[union-attr]
        assert threads <= 50 + 1 + 8 + 12, threads  # a thread a check, the loop, a few more
    finally:
        zel.stop()
        api.close()
        target.close()
