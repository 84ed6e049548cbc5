"""A booted Debian with a real systemd and journald (systemd-nspawn -b), zelador's .deb installed.

The debootstrapped root of each release is cached in $ZELADOR_SYSTEST_CACHE (default
/var/cache/zelador-systest) and copied for each run; each release boots once per test session.
Commands run inside with `nsenter -t <leader> -a`. Needs root, debootstrap and systemd-container.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from zelador.cli.demo import lay_out_mfe

from ..conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ZELADOR_SYSTEST_CACHE", "/var/cache/zelador-systest"))
MIRROR = os.environ.get("ZELADOR_SYSTEST_MIRROR")  # unset: debootstrap's own default
# What the .deb depends on is preinstalled, so installing it needs no network.
PACKAGES = ("systemd,systemd-sysv,dbus,procps,python3,python3-psutil,python3-yaml,"
            "python3-systemd,python3-sdnotify,python3-croniter,python3-prometheus-client,"
            "libpam-systemd,xvfb,x11-utils")  # a real logind login and X display (session tests)
INSIDE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "",
              "SYSTEMD_COLORS": "0", "TERM": "dumb"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:  # everything else is required: a missing tool fails, never skips
        for item in items:
            if "system" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="system tests need root (nspawn)"))


def rootfs(release: str) -> Path:
    """The cached root of `release`, debootstrapped on first use (about 45 s)."""
    target = CACHE / f"rootfs-{release}"
    stamp = target / ".zelador-systest"
    if stamp.exists() and stamp.read_text() == PACKAGES:
        return target
    partial = CACHE / f"rootfs-{release}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", release, str(partial)]
    done = subprocess.run(command + ([MIRROR] if MIRROR else []), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"debootstrap {release} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    (partial / "etc" / "hostname").write_text(f"pos-{release}\n")
    stamp_tmp = partial / ".zelador-systest"
    stamp_tmp.write_text(PACKAGES)
    partial.rename(target)
    return target


class Machine:
    """One booted container. `sh()` runs a shell command inside and returns what it printed."""

    def __init__(self, release: str, workdir: Path) -> None:
        self.release = release
        self.root = workdir / f"root-{release}"
        subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs(release)), str(self.root)],
                       check=True)
        self.log_path = workdir / f"nspawn-{release}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 closed in close()
        self._boot()

    def _boot(self) -> None:
        release = self.release
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(self.root), "-b", "--register=no", "--keep-unit",
             "--console=pipe", "-M", f"zsys-{release}-{os.getpid()}"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.leader = wait_for(self._find_leader, 30, "the container's init")
            state = ""

            def booted() -> bool:
                nonlocal state
                state = self.run("systemctl is-system-running").stdout.strip()
                return state in ("running", "degraded")

            try:
                wait_for(booted, 60, f"{release} to boot", every=0.2)
            except AssertionError as exc:
                raise AssertionError(f"{exc} (last state {state!r})") from None
        except BaseException:
            self.close()
            raise

    def poweroff_and_boot(self, how: str = "systemctl poweroff") -> None:
        """An orderly shutdown from inside (`how`), then the same root booted again."""
        self.run(f"{how} --no-block")
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.release} did not power off within 60 s") from None
        self._boot()

    def _find_leader(self) -> int | None:
        """The container's init: nspawn's descendant that is pid 1 in its own pid namespace
        (nspawn's first child is a short-lived helper, not the leader)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: "
                               f"{self.log_path.read_text(errors='replace')[-2000:]}")
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                status = Path(f"/proc/{child.pid}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines()
                          if line.startswith("NSpid:")), [])
            if len(nspid) > 1 and nspid[-1] == "1":
                return child.pid
        return None

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", "/bin/sh", "-c",
                               command], capture_output=True, text=True, timeout=timeout,
                              env=INSIDE_ENV)

    def sh(self, command: str, timeout: float = 60) -> str:
        """Run `command`; fail the test, showing its output, unless it exits 0."""
        done = self.run(command, timeout)
        if done.returncode != 0:
            raise AssertionError(f"`{command}` exited {done.returncode} in {self.release}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done.stdout.strip()

    def pids(self, name: str) -> list[int]:
        """Pids (as the container sees them) of live processes named `name`."""
        out = self.run(f"pidof -x {name}").stdout.split()
        return sorted(int(p) for p in out)

    def kill_and_wait(self, name: str) -> tuple[int, int, float, str]:
        """kill -9 the settled process `name`; return (old pid, new pid, seconds until the new
        one ran, journal cursor from just before the kill)."""
        (old,) = wait_for(lambda: self.pids(name), 10, f"{name} to run")
        self.stable(old)
        after = self.cursor()
        killed = self.run(f"kill -9 {old}")
        if killed.returncode != 0:  # it went meanwhile: show what zelador saw
            raise AssertionError(f"{name} pid {old} went before the kill in {self.release}:\n"
                                 + self.run("journalctl -u zelador -n 40 --no-pager").stdout)
        killed = time.monotonic()
        new = wait_for(lambda: [p for p in self.pids(name) if p != old], 5, f"a new {name}")[0]
        return old, new, time.monotonic() - killed, after

    def stable(self, pid: int, seconds: float = 11.5) -> None:
        """Wait until `pid` has lived `seconds`: zelador treats an exit before `restart.stable`
        (10s by default) as a failed start and backs off, so an at-once restart needs this."""
        age = float(self.sh(f"ps -o etimes= -p {pid}"))  # whole seconds, rounded down
        if age < seconds:
            time.sleep(seconds - age)

    def active(self, unit: str) -> str:
        """`systemctl is-active` (which exits non-zero for anything but active)."""
        return self.run(f"systemctl is-active {unit}").stdout.strip()

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines())

    def cursor(self) -> str:
        """Where the journal ends now; `journal(after=...)` reads only what comes later."""
        out = self.sh("journalctl -n 0 --show-cursor")
        return out.rsplit("-- cursor: ", 1)[1].strip()

    def journal(self, after: str = "", **match: str) -> list[dict[str, Any]]:
        """Entries after the cursor `after` whose fields equal `match`.

        Matching happens here, not in journalctl: `journalctl --after-cursor` skips the first
        matching entry when the cursor's own entry does not match its filter."""
        since = f"'--after-cursor={after}'" if after else ""
        out = self.sh(f"journalctl --no-pager -o json {since}")
        entries = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
        return [e for e in entries if all(e.get(k) == v for k, v in match.items())]

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, mode)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nspawn -b: an orderly poweroff of the container
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def build_deb(*args: str) -> Path:
    done = subprocess.run(["bash", str(REPO / "scripts" / "build-deb.sh"), *args],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    return REPO / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def deb() -> Path:
    """zelador's .deb, built from this checkout by the README's command."""
    return build_deb()


@pytest.fixture(scope="session")
def newer_deb(deb: Path) -> Path:
    """The same code under a later version, to upgrade to."""
    version = deb.name.split("_")[1]
    return build_deb("--version", f"{version}+upgrade1")


@contextlib.contextmanager
def installed(release: str, deb: Path, workdir: Path, session_monitor: bool = False
              ) -> Iterator[Machine]:
    """`release` booted, the stand-in MFE laid out, and the .deb installed with apt.

    The shipped config runs Monitor in the desktop session (`user: session`); these containers
    have none, so unless `session_monitor` the config is edited to run it as root, as before,
    and the tests that are not about sessions see it run."""
    machine = Machine(release, workdir)
    try:
        lay_out_mfe(str(machine.root), sleep=str(machine.root / "bin" / "sleep"))
        (machine.root / "var" / "tmp").mkdir(exist_ok=True)  # nspawn mounts a tmpfs on /tmp
        shutil.copy(deb, machine.root / "var" / "tmp" / deb.name)
        machine.sh(f"apt-get install -y -q /var/tmp/{deb.name}", timeout=180)
        if not session_monitor:
            config = machine.root / "etc" / "zelador" / "zelador.yaml"
            lines = config.read_text().splitlines(keepends=True)
            kept = [line for line in lines if "user: session" not in line
                    and "that user, with its DISPLAY" not in line]
            assert len(kept) == len(lines) - 2, "the shipped config changed: adapt this"
            config.write_text("".join(kept))
            machine.sh("systemctl reload zelador")
            wait_for(lambda: machine.pids("Monitor"), 20, "Monitor as root")
        yield machine
    finally:
        machine.close()


@pytest.fixture(scope="module")
def bookworm(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    with installed("bookworm", deb, tmp_path_factory.mktemp("bookworm")) as machine:
        yield machine


@pytest.fixture(scope="module")
def bullseye(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    with installed("bullseye", deb, tmp_path_factory.mktemp("bullseye")) as machine:
        yield machine


@pytest.fixture(scope="module")
def trixie(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    with installed("trixie", deb, tmp_path_factory.mktemp("trixie")) as machine:
        yield machine
