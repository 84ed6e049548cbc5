"""Shared helpers: a stand-in MFE with per-test process names, and the real daemon in a subprocess.

Every process a test starts is killed in a finalizer, whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest

from zelador.cli.demo import holder_name, lay_out_mfe, script_name
from zelador.runtime.control import ask

LINE = re.compile(r"^\S+ (\w+)\s+(.*)  \[(\w+)((?: \w+=\S+)*)\]$")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pids_named(name: str) -> list[int]:
    """Live (non-zombie) processes with this exact name."""
    out = []
    for proc in psutil.process_iter(["name", "status"]):
        if proc.info["name"] == name and proc.info["status"] != psutil.STATUS_ZOMBIE:
            out.append(proc.pid)
    return out


@dataclass
class Mfe:
    """A stand-in MFE laid out under `root`, its daemons named uniquely for this test."""

    root: Path
    com: str  # the Comunicador stand-in's process name
    mon: str
    bin: Path

    def script(self, name: str) -> Path:
        return self.bin / script_name(name)

    def config(self, interval: str = "10s", extra_com: str = "", extra_mon: str = "",
               monitor: bool = True, defaults: bool = False) -> str:
        """`defaults=True`: the restart policy as shipped (stable 10s ...), not a fast test one."""
        restart = "" if defaults else "    restart: {delay: 0s, stable: 0s, burst: 1000 in 1m}\n"
        text = f"""interval: {interval}
programs:
  comunicador:
    match: {{name: {self.com}}}
    start: {self.script(self.com)}
    start_timeout: 5s
{restart}{extra_com}"""
        if monitor:
            text += f"""  monitor:
    match: {{name: {self.mon}}}
    start: {self.script(self.mon)}
    start_timeout: 5s
    part_of: comunicador
{extra_mon}"""
        return text


def _laid_out(tmp_path: Path, reaping: bool):
    tag = uuid.uuid4().hex[:6]
    com, mon = f"Co{tag}", f"Mo{tag}"
    folder = lay_out_mfe(str(tmp_path / "mfe"), (com, mon), reaping=reaping)
    try:
        yield Mfe(tmp_path / "mfe", com, mon, Path(folder))
    finally:
        for name in (com, mon, holder_name(com), holder_name(mon)):
            for pid in pids_named(name):
                with_suppress_kill(pid)


@pytest.fixture
def mfe(tmp_path: Path):
    yield from _laid_out(tmp_path, reaping=True)


@pytest.fixture
def stubborn_mfe(tmp_path: Path):
    """The MFE started by a launcher that never reaps: killed daemons stay zombies."""
    yield from _laid_out(tmp_path, reaping=False)


def with_suppress_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Zelador:
    """The real daemon (`python -m zelador run`) with its stderr lines parsed into events."""

    tmp: Path
    config_text: str
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    options: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.tmp / "zelador.yaml"

    @property
    def socket(self) -> str:
        return str(self.tmp / "run" / "control.sock")

    @property
    def log(self) -> Path:
        return self.tmp / "zelador.log"

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)
        self.config_path.chmod(0o644)

    def argv(self, command: str = "run") -> list[str]:
        return [sys.executable, "-m", "zelador", command, "-c", str(self.config_path),
                "--runtime-dir", str(self.tmp / "run"), "--log-target", "stderr",
                "--logs-dir", str(self.tmp / "logs"), "--state-dir", str(self.tmp / "state"),
                "--scopes", "no", *self.options]

    def start(self, wait_ready: bool = True) -> Zelador:
        self.write_config(self.config_text)
        env = {**os.environ, **self.env}
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(self.argv(), stderr=err, stdout=err, env=env)
        if wait_ready:
            self.wait_event("ready")
        return self

    def events(self) -> list[dict[str, str]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            found = LINE.match(line)
            if found:
                event = {"level": found.group(1), "message": found.group(2), "kind": found.group(3)}
                event.update(kv.split("=", 1) for kv in found.group(4).split())
                out.append(event)
        return out

    def matching(self, kind: str, program: str | None = None) -> list[dict[str, str]]:
        return [e for e in self.events() if e["kind"] == kind
                and (program is None or e.get("program") == program)]

    def wait_event(self, kind: str, program: str | None = None, count: int = 1,
                   timeout: float = 10.0) -> dict[str, str]:
        def seen() -> Any:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"zelador exited {self.proc.returncode}:\n{self.log.read_text()}")
            found = self.matching(kind, program)
            return found[count - 1] if len(found) >= count else None
        try:
            return wait_for(seen, timeout, f"{count}x {kind} {program or ''}")
        except AssertionError:
            print(self.log.read_text())
            raise

    def status(self) -> dict[str, Any]:
        return ask(self.socket, {"cmd": "status"})

    def program(self, name: str) -> dict[str, Any]:
        return next(p for p in self.status()["programs"] if p["name"] == name)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def zelador_factory(tmp_path: Path):
    made: list[Zelador] = []

    def make(config_text: str, *options: str, **env: str) -> Zelador:
        z = Zelador(tmp_path, config_text, dict(env), options=list(options))
        made.append(z)
        return z

    try:
        yield make
    finally:
        for z in made:
            z.stop()


def stop_group(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Stop a test server started in a session of its own: TERM to its group, KILL after
    `timeout`."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
