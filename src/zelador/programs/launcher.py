"""The only module that spawns, signals or reaps.

Start and stop scripts run detached: in a session of their own, stdin from /dev/null, their
output kept (journal or a log file, never /dev/null), as the configured user and group, with the
configured environment and working directory, and never through a shell unless the config says
`shell: true`. Under systemd each one runs in a transient scope of its own
(`systemd-run --scope`), so what it starts outlives `systemctl restart zelador`.

Signals to watched processes go through a pidfd opened and checked against the process's start
time, so a pid reused by another process is never signalled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pwd
import signal
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

from zelador.config.host import check_root_only, host_problem, running_as_root
from zelador.config.model import Program
from zelador.errors import LaunchError, UnsafeFileError
from zelador.programs.pidfd import SUPPORTED as PIDFD
from zelador.programs.pidfd import open_pidfd
from zelador.programs.proctree import cgroup_pids, descendant_pids, family_pids, session_members
from zelador.programs.session import Session
from zelador.programs.states import Instance

# By its full path: never looked up in a PATH that a program's `environment:` may have set.
SYSTEMD_RUN = "/usr/bin/systemd-run"

# Variables that belong to zelador's own service and must not leak to what it starts.
PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
               "LISTEN_FDNAMES", "JOURNAL_STREAM", "INVOCATION_ID", "MAINPID")


@dataclass
class Child:
    """A start or stop script we spawned and must reap."""

    program: str
    kind: str  # "start" or "stop"
    popen: subprocess.Popen[bytes]
    fd: int = -1  # pidfd: readable when the script exits (-1 without pidfd support)
    unit: str = ""  # the transient scope it runs in, if any
    slice: str = ""  # ... and the slice that scope was created in ("": system.slice)
    created: float = 0.0  # its start time, as psutil gives processes' (create_time)

    @property
    def pid(self) -> int:
        return self.popen.pid


OutputFor = Callable[[str], int]  # program name -> an fd for the script's stdout and stderr


def _devnull_output(program: str) -> int:
    return os.open(os.devnull, os.O_WRONLY)


def _create_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


def _no_output_place(program: str) -> str:
    return ""


def _refuse_unsafe(program: str, what: str) -> None:
    """As root, walk a command's path and refuse it (OSError saying what to fix) if a non-root
    user could change it; checked at every run, like a start script (config/host.py)."""
    if not running_as_root() or not program.startswith("/"):
        return
    try:
        check_root_only(program, what)
    except UnsafeFileError as exc:
        raise OSError(errno.EPERM, str(exc)) from None
    except FileNotFoundError:
        pass  # said by the exec itself, as before


@dataclass
class Launcher:
    output_for: OutputFor = _devnull_output
    output_where: Callable[[str], str] = _no_output_place  # where a script's output goes
    use_scopes: bool = False  # run each script in its own transient systemd scope
    stop_after: str = ""  # zelador's unit: scopes are stopped after it at shutdown (Before=)
    children: dict[int, Child] = field(default_factory=dict)  # pid -> child
    helpers: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # zelador's own
    # held while a thread spawns a helper and while the reaper looks, so a helper that exits at
    # once is never taken for an orphan before it is in `helpers`
    helper_lock: threading.Lock = field(default_factory=threading.Lock)

    def spawn_helper(self, argv: list[str], pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
        """A process of zelador's own (the job report worker): known here, so the reaper leaves
        its status to its Popen and never takes it for an orphaned daemon."""
        with self.helper_lock:
            for pid, old in list(self.helpers.items()):  # a dead worker leaves the list
                if old.returncode is not None:
                    del self.helpers[pid]
            popen = subprocess.Popen(argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL)
            self.helpers[popen.pid] = popen
        return popen

    def run_helper(self, argv: list[str], data: bytes, timeout: float,
                   env: dict[str, str]) -> tuple[int | None, bytes]:
        """Run a command of zelador's own from a worker thread (an alert command): `data` on its
        stdin, its output back, in a session of its own that is killed whole after `timeout`.
        Returns (exit status or None when it was killed for the timeout, output). OSError if
        it cannot be run, or (as root) if a non-root user could change it or its path."""
        _refuse_unsafe(argv[0], "command")
        with self.helper_lock:
            popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     close_fds=True)
            self.helpers[popen.pid] = popen
        try:
            try:
                out, _ = popen.communicate(data, timeout=timeout)
                return popen.returncode, out
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                try:  # a grandchild that left the group may still hold the pipe: don't wait on it
                    out, _ = popen.communicate(timeout=1.0)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
                    if popen.stdout is not None:
                        popen.stdout.close()
                    out = b""
                return None, out
        finally:
            with self.helper_lock:
                self.helpers.pop(popen.pid, None)

    def output_tail(self, program: str, lines: int = 3) -> str:
        """The script's last output lines when they are in a file, else where they went."""
        where = self.output_where(program)
        if not where.startswith("/"):
            return f"see {where}" if where else ""
        try:
            with open(where, "rb") as stream:
                stream.seek(max(0, os.fstat(stream.fileno()).st_size - 2048))
                text = stream.read().decode("utf-8", "replace")
        except OSError:
            return f"see {where}"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return (" | ".join(tail)[-400:] + f" (in {where})") if tail else f"nothing (in {where})"

    def start(self, program: Program, session: Session | None = None,
              session_env: Mapping[str, str] | None = None) -> Child:
        """Spawn the program's start script. Raises LaunchError with a one-line reason.

        With a desktop `session` (`user: session`): as that session's user, with its DISPLAY,
        XAUTHORITY, XDG_RUNTIME_DIR and session bus, and (under systemd) in a scope in that
        user's slice, beside the rest of the desktop."""
        if session is None:
            return self._spawn(program, "start", program.start)
        program = dataclasses.replace(program, user=session.user, environment=(
            *sorted((session_env or {}).items()), *program.environment))
        return self._spawn(program, "start", program.start, f"user-{session.uid}.slice")

    def stop(self, program: Program, instance: Instance, force: bool,
             duplicate: bool = False) -> Child | None:
        """Stop a watched process: its stop command or signal, or SIGKILL when `force`.

        A duplicate gets the stop *signal* only: the stop command targets the program itself
        and would stop the main instance too."""
        if duplicate and not force:
            self.signal(instance, program.stop.signal)
            return None
        if force:
            for child in self.children_of(program.name, "stop"):
                self.kill_group(child)
            self.signal(instance, signal.SIGKILL)
            return None
        if program.stop.command:
            return self._spawn(program, "stop", program.stop.command)
        self.signal(instance, program.stop.signal)
        return None

    def signal(self, instance: Instance, signum: int) -> bool:
        """Signal exactly this process; False if it is already gone."""
        fd = open_pidfd(instance) if PIDFD else None
        if fd is None:
            if PIDFD:
                return False
            try:  # no pidfd: fall back to kill(2); the start-time check just ran in the probe
                os.kill(instance.pid, signum)
            except ProcessLookupError:
                return False
            return True
        try:
            signal.pidfd_send_signal(fd, signum)
            return True
        except ProcessLookupError:
            return False
        finally:
            os.close(fd)

    def signal_all(self, instances: Iterable[Instance], signum: int) -> list[int]:
        """Signal each of these exact processes (a tree's members); the pids that got it."""
        return sorted(i.pid for i in instances if self.signal(i, signum))

    def kill_group(self, child: Child) -> None:
        """SIGKILL a hung script and everything in its process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)

    def kill_script(self, child: Child, spare: Instance | None = None) -> list[int]:
        """SIGKILL a start script and everything it started, except `spare` and its descendants.

        "Everything it started": its session and process group (it runs in a session of its
        own), and its descendants wherever they went (a daemon that called setsid() left the
        session but is still below the script, or, once the script is gone, below us: we are a
        child subreaper). Under systemd the scope's cgroup is killed the same way. Returns the
        pids signalled.
        """
        spared = family_pids(spare) if spare is not None else set()
        killed: set[int] = set()
        if child.popen.poll() is None and child.pid not in spared:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)  # first, so it forks nothing more meanwhile
            killed.add(child.pid)
        for _ in range(3):  # again, for what was being forked while we looked
            victims = session_members(child.pid) | descendant_pids(child.pid)
            if child.unit:
                victims |= cgroup_pids(child.unit, child.slice)
            # only our descendants (we are their subreaper): an ended script's pid, reused by a
            # stranger as its session id, must not make us kill the stranger's session
            victims &= descendant_pids(os.getpid())
            victims -= spared | killed
            if not victims:
                break
            for pid in sorted(victims):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed |= victims
        return sorted(killed)

    def reap(self, child: Child) -> int | None:
        """The script's exit status once it has exited (then forgotten), else None."""
        code = child.popen.poll()
        if code is None:
            return None
        self.children.pop(child.pid, None)
        if child.fd >= 0:
            os.close(child.fd)
            child.fd = -1
        return code

    def children_of(self, program: str, kind: str) -> list[Child]:
        return [c for c in self.children.values() if c.program == program and c.kind == kind]

    def _spawn(self, program: Program, kind: str, argv: tuple[str, ...], slice_: str = "") -> Child:
        problem = host_problem(program, argv[0], kind)
        if problem:
            raise LaunchError(problem, host=True)
        env = self._environment(program)
        unit = ""
        command = list(argv)
        if self.use_scopes:
            unit = f"zelador-{program.name}-{kind}-{os.urandom(4).hex()}.scope"
            command = [SYSTEMD_RUN, "--scope", "--quiet", "--collect", f"--unit={unit}",
                       f"--description=zelador: {kind} {program.name}"]
            command += [f"--uid={program.user}"] if program.user else []
            command += [f"--gid={program.group}"] if program.group else []
            command += [f"--slice={slice_}"] if slice_ else []
            command += [f"--property=Before={self.stop_after}"] if self.stop_after else []
            command += ["--", *argv]
        out = self.output_for(program.name)
        try:
            popen = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                cwd=program.working_directory or "/", start_new_session=True, close_fds=True,
                umask=0o022,  # systemd's default: zelador's own UMask=0077 is not theirs
                **self._credentials(program))
        except FileNotFoundError:
            raise LaunchError(f"{kind} script {command[0]!r} does not exist", host=True) from None
        except PermissionError:
            who = f"user {program.user!r}" if program.user else "zelador"
            raise LaunchError(f"{kind} script {command[0]!r}: permission denied to {who} (is it "
                              "executable, and can that user reach every folder above it?)",
                              host=True) from None
        except OSError as exc:
            raise LaunchError(f"cannot run {kind} script {command[0]!r}: {exc.strerror}") from None
        finally:
            os.close(out)
        child = Child(program.name, kind, popen, unit=unit, slice=slice_ if unit else "",
                      created=_create_time(popen.pid))
        if PIDFD:
            try:
                child.fd = os.pidfd_open(popen.pid)
            except OSError:
                child.fd = -1
        self.children[popen.pid] = child
        return child

    def _credentials(self, program: Program) -> dict[str, Any]:
        if self.use_scopes or not (program.user or program.group):
            return {}
        creds: dict[str, Any] = {}
        if program.user:
            entry = pwd.getpwnam(program.user)
            creds["user"] = entry.pw_uid
            gid = entry.pw_gid
            creds["extra_groups"] = os.getgrouplist(program.user, gid)
            creds["group"] = gid
        if program.group:
            creds["group"] = program.group
        return creds

    def _environment(self, program: Program) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
        if program.user:
            try:
                entry = pwd.getpwnam(program.user)
            except KeyError:
                raise LaunchError(f"user {program.user!r} does not exist", host=True) from None
            env.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name,
                       SHELL=entry.pw_shell or "/bin/sh")
        env.update(program.environment)
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        return env
