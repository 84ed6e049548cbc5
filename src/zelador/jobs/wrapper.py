"""`zelador exec JOB -- COMMAND ARGS...`: run a job's command and report it, like runitor.

Reports the start (with a fresh run id), runs the command (never through a shell; its stdin is
ours, its stdout and stderr pass through to ours as they come), keeps the last 10 kB of both,
then reports OK or FAIL with the exit status, the duration (monotonic) and that tail, and exits
with the command's own status (128+N for a signal, 127 not found, 126 not executable). SIGTERM,
SIGINT and SIGHUP are passed on to the command (systemd's TimeoutStartSec= sends SIGTERM).

The job always runs: when zelador cannot be reached (or does not know the job) that is said once
on stderr and the command runs anyway. Reports that could not be sent are kept, with their
times: sent at the end if zelador is back by then, else written to the spool folder
($STATE_DIRECTORY/spool), which zelador replays when it starts. Nothing of the run is lost.
"""

from __future__ import annotations

import json
import os
import pwd
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import IO, Any, Callable

from zelador.errors import UsageError, ZeladorError
from zelador.jobs.engine import OUTPUT_CAP

Send = Callable[[dict[str, Any]], None]


class Tail:
    """The last `cap` bytes written."""

    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self.cap = cap
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.cap:
            del self.data[: len(self.data) - self.cap]

    def text(self) -> str:
        return bytes(self.data[-self.cap:]).decode("utf-8", "replace")


def run_wrapped(job: str, argv: Sequence[str], send: Send, *, user: str | None = None,
                err: IO[str], out_fd: int = 1, err_fd: int = 2, spool: str | None = None) -> int:
    run_id = uuid.uuid4().hex[:12]
    reporter = _Reporter(job, run_id, send, err, spool)
    try:
        return _run(argv, reporter, user, out_fd, err_fd)
    finally:
        reporter.finish()


def _run(argv: Sequence[str], reporter: _Reporter, user: str | None, out_fd: int,
         err_fd: int) -> int:
    reporter.send("start")
    began = time.monotonic()
    tail = Tail()
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                **_credentials(user))
    except OSError as exc:
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"cannot run {argv[0]!r}: {exc.strerror}"
        reporter.say(message)
        reporter.send("fail", exit_status=status, message=message,
                      duration=time.monotonic() - began)
        return status
    passed = {sig: signal.signal(sig, lambda signum, _frame: proc.send_signal(signum))
              for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        _pump(proc, tail, out_fd, err_fd)
        code = proc.wait()
    finally:
        for sig, handler in passed.items():
            signal.signal(sig, handler)
    duration = time.monotonic() - began
    status = code if code >= 0 else 128 - code
    if code == 0:
        reporter.send("ok", exit_status=0, output=tail.text(), duration=duration)
    else:
        if code < 0:
            message = f"killed by {signal.Signals(-code).name}"
        else:
            lines = [line for line in tail.text().splitlines() if line.strip()]
            message = lines[-1] if lines else f"exit status {code}"
        reporter.send("fail", exit_status=status, message=message, output=tail.text(),
                      duration=duration)
    return status


def _pump(proc: subprocess.Popen[bytes], tail: Tail, out_fd: int, err_fd: int) -> None:
    """Copy the command's output through as it comes, keeping the tail."""
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out_fd)
    sel.register(proc.stderr, selectors.EVENT_READ, err_fd)
    while sel.get_map():
        for key, _ in sel.select():
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                continue
            tail.add(chunk)
            _write_all(key.data, chunk)
    sel.close()


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # our own output is gone (a closed terminal): the command still runs and is reported


def _credentials(user: str | None) -> dict[str, Any]:
    if user is None:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ZeladorError(f"no user {user!r} on this machine") from None
    env = dict(os.environ, HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(user, entry.pw_gid), "env": env}


class _Reporter:
    """Sends the reports. While zelador cannot be reached they are held (with their times) and
    sent at the end if it is back, else written to the spool folder, which zelador reads when
    it starts; an unknown job is said once and not reported."""

    def __init__(self, job: str, run_id: str, send: Send, err: IO[str],
                 spool: str | None = None) -> None:
        self.job = job
        self.run_id = run_id
        self._send = send
        self._err = err
        self._spool = spool
        self.held: list[dict[str, Any]] = []
        self.refused = False

    def send(self, verb: str, **fields: Any) -> None:
        if self.refused:
            return
        request = {"cmd": "report", "job": self.job, "verb": verb, "run": self.run_id,
                   "source": "zelador exec", "at": time.time(), **fields}
        if self.held:
            self.held.append(request)
            return
        try:
            self._send(request)
        except UsageError as exc:  # zelador runs but has no such job
            self.refused = True
            self.say(f"{exc}; running the job anyway, without reporting it")
        except ZeladorError as exc:
            self.held.append(request)
            self.say(f"{exc}; running the job anyway, its reports are kept for zelador")

    def finish(self) -> None:
        """Send what was held if zelador is back, else spool it."""
        while self.held:
            try:
                self._send(self.held[0])
            except ZeladorError:
                break
            self.held.pop(0)
        if not self.held:
            return
        if self._spool is None:
            self.say("the reports of this run are lost (no spool folder)")
            return
        try:
            path = write_spool(self._spool, self.run_id, self.held)
        except OSError as exc:
            self.say(f"the reports of this run are lost: cannot write to {self._spool}: "
                      f"{exc.strerror}")
            return
        self.say(f"reports kept in {path}; zelador reads them when it starts")

    def say(self, text: str) -> None:
        print(f"zelador exec: {text}", file=self._err, flush=True)


def write_spool(folder: str, run_id: str, requests: list[dict[str, Any]]) -> str:
    """One file per run, written whole (temp file + rename): zelador never reads half of one."""
    from zelador.store.files import write_atomic

    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, f"{time.time():.6f}-{run_id}.json")
    write_atomic(path, json.dumps(requests).encode(), 0o600)  # O_EXCL temporary, no link followed
    return path
