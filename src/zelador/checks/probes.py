"""Looking at something, on a worker thread, never longer than its timeout.

TCP: a connect. HTTP: http.client with a hard deadline for the whole exchange (each read gets
only the time that is left, so a server that trickles a byte a second is cut like one that never
answers), at most MAX_BODY bytes read (more is a failed check, not a crash). Command: through the
launcher (its session is killed whole at the timeout, and the reaper leaves it alone).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

from zelador.checks import freshness
from zelador.config.durations import format_duration
from zelador.config.model import HttpCheck, Probe

if TYPE_CHECKING:
    import http.client

MAX_BODY = 1024 * 1024
CHUNK = 65536

Runner = Callable[[list[str], bytes, float, dict[str, str]],
                  tuple[Optional[int], bytes]]  # 3.9: no `|` outside annotations


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str  # for people: "HTTP 200 in 12ms", "connection refused", "timed out after 1s"
    took: float
    body: bytes = b""  # an HTTP answer's body (checks that read JSON)


def run(probe: Probe, runner: Runner | None = None, keep_body: bool = False) -> Result:
    started = time.monotonic()
    try:
        if probe.kind == "tcp":
            return _tcp(probe, started)
        if probe.kind == "http":
            return _http(probe, started, keep_body)
        assert runner is not None
        return _command(probe, started, runner)
    except Exception as exc:  # a probe's bug is a failed check, never a dead worker
        return Result(False, f"{type(exc).__name__}: {exc}", time.monotonic() - started)


def _took(started: float) -> float:
    return time.monotonic() - started


def _timed_out(probe: Probe, started: float) -> Result:
    return Result(False, f"no answer within {format_duration(probe.timeout)}", _took(started))


def _tcp(probe: Probe, started: float) -> Result:
    host, _, port = probe.target.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=probe.timeout):
            pass
    except socket.timeout:
        return _timed_out(probe, started)
    except OSError as exc:
        return Result(False, f"{probe.target}: {exc.strerror or exc}", _took(started))
    return Result(True, f"{probe.target} accepts connections ({_ms(started)})", _took(started))


def _http(probe: Probe, started: float, keep_body: bool) -> Result:
    import http.client  # (and email, ssl: 6 MB a daemon without HTTP checks does not carry)

    parts = urlsplit(probe.target)
    deadline = started + probe.timeout
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl

        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                           timeout=probe.timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=probe.timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request(probe.method, path, headers={"User-Agent": "zelador-check",
                                                  **dict(probe.headers)})
        _left(conn, deadline)
        answer = conn.getresponse()
        body = b""
        while len(body) <= MAX_BODY:
            _left(conn, deadline)
            chunk = answer.read1(CHUNK) if hasattr(answer, "read1") else answer.read(CHUNK)
            if not chunk:
                break
            body += chunk
    except (socket.timeout, TimeoutError):
        return _timed_out(probe, started)
    except (OSError, http.client.HTTPException) as exc:
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return Result(False, f"{text}", _took(started))
    finally:
        conn.close()
    if len(body) > MAX_BODY:
        return Result(False, f"HTTP {answer.status}: the answer is larger than 1 MB",
                      _took(started))
    wanted = probe.status or tuple(range(200, 400))
    if answer.status not in wanted:
        return Result(False, f"HTTP {answer.status} {answer.reason}".strip(), _took(started))
    if probe.body is not None:
        text = body.decode("utf-8", "replace")
        if re.search(probe.body, text) is None:
            return Result(False, f"HTTP {answer.status}, but the body does not match "
                          f"{probe.body!r}", _took(started))
    return Result(True, f"HTTP {answer.status} in {_ms(started)}", _took(started),
                  body if keep_body else b"")


def _left(conn: http.client.HTTPConnection, deadline: float) -> None:
    """Give the socket only the time left before the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout("deadline")
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _command(probe: Probe, started: float, runner: Runner) -> Result:
    argv = list(probe.argv)
    try:
        status, out = runner(argv, b"", probe.timeout, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except OSError as exc:
        return Result(False, f"cannot run {argv[0]}: {exc.strerror or exc}", _took(started))
    if status is None:
        return Result(False, f"{argv[0]} ran past {format_duration(probe.timeout)} and was "
                      "killed with its process group", _took(started))
    tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    if status != 0:
        return Result(False, f"{argv[0]} exited {status}" + (f": {tail[0][:200]}" if tail[0]
                                                            else ""), _took(started))
    return Result(True, f"{argv[0]} exited 0 ({_ms(started)})", _took(started))


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f}ms"


def http_check(check: HttpCheck, runner: Runner) -> tuple[Result, freshness.Ages | None]:
    """On a worker: the request, then the JSON rule (a parse of up to 1 MB, off the loop)."""
    result = run(check.probe, runner, keep_body=check.json is not None)
    if not result.ok or check.json is None:
        return result, None
    try:
        document = json.loads(result.body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past Python's stack
        return Result(False, f"the answer is not JSON ({str(exc)[:80]})", result.took), None
    try:
        ages = freshness.ages(document, check.json, time.time())  # the items' times are wall times
    except freshness.ShapeError as exc:
        return Result(False, f"the JSON is not as the rule says: {exc}", result.took), None
    return Result(True, f"{result.reason}; {len(ages.stale)} stale, {len(ages.fresh)} fresh",
                  result.took), ages
