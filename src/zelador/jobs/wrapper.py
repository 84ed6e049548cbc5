"""`zelador exec JOB -- COMMAND ARGS...`: run a job's command and report it, like runitor.

Reports the start (with a fresh run id), runs the command (never through a shell; its stdin is
ours, its stdout and stderr pass through to ours as they come), keeps the last 10 kB of both,
then reports OK or FAIL with the exit status, the duration (monotonic) and that tail, and exits
with the command's own status (128+N for a signal, 127 not found, 126 not executable). SIGTERM,
SIGINT and SIGHUP are passed on to the command (systemd's TimeoutStartSec= sends SIGTERM).

The job always runs: when zelador cannot be reached (or does not know the job) that is said once
on stderr and the command runs anyway.
"""

from __future__ import annotations

import os
import pwd
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import IO, Any, Callable

from zelador.errors import ZeladorError
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
                err: IO[str], out_fd: int = 1, err_fd: int = 2) -> int:
    run_id = uuid.uuid4().hex[:12]
    reporter = _Reporter(job, run_id, send, err)
    reporter.send("start")
    began = time.monotonic()
    tail = Tail()
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                **_credentials(user))
    except OSError as exc:
        status = 127 if isinstance(exc, FileNotFoundError) else 126
        message = f"cannot run {argv[0]!r}: {exc.strerror}"
        print(f"zelador exec: {message}", file=err, flush=True)
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
    """Sends the reports; after the first failure to reach zelador, says so once and goes on."""

    def __init__(self, job: str, run_id: str, send: Send, err: IO[str]) -> None:
        self.job = job
        self.run_id = run_id
        self._send = send
        self._err = err
        self.failed = False

    def send(self, verb: str, **fields: Any) -> None:
        if self.failed:
            return
        request = {"cmd": "report", "job": self.job, "verb": verb, "run": self.run_id,
                   "source": "zelador exec", **fields}
        try:
            self._send(request)
        except ZeladorError as exc:
            self.failed = True
            print(f"zelador exec: {exc}; running the job anyway, without reporting it",
                  file=self._err, flush=True)
