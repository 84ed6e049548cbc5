"""A small threaded HTTP server: `/` (the page), `/api/status` (JSON), `/metrics`.

It never touches the loop's state: `Snapshots.get` hands it the latest status dict, asking the
loop (through `Loop.post`) for a fresh one at most once a second, whatever the request rate.
Bounded like something exposed: at most MAX_CLIENTS connections at once (more get 503 and are
closed), each connection ended CONNECTION_DEADLINE after it opened whatever it sends (a
slowloris client holds a thread that long, no longer), http.server's own limits on header lines
and count, GET and HEAD only (anything else: 405). Optional basic auth from a root-only file of
`user:password` lines.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from zelador.config.host import open_checked, running_as_root
from zelador.config.model import Web
from zelador.errors import UnsafeFileError
from zelador.runtime.loop import Loop
from zelador.web.page import PAGE
from zelador.web.requests import Hosts, Notes, framing_problem

MAX_CLIENTS = 32
IDLE_TIMEOUT = 10.0  # a socket read waits at most this
CONNECTION_DEADLINE = 30.0  # a connection is closed this long after it opened
FRESH = 1.0  # a snapshot older than this is asked for again
EVENTS = 50
AUTH_CAP = 64 * 1024  # bytes of the auth file read


class Snapshots:
    """The latest status, built on the loop thread and read by server threads."""

    def __init__(self, loop: Loop, build: Callable[[], dict[str, Any]]) -> None:
        self._loop = loop
        self._build = build
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self._at = -FRESH
        self._asked: threading.Event | None = None

    def get(self, wait: float = 1.0) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._at < FRESH:
                return self._data
            asked = self._asked
            if asked is None:  # one request to the loop, however many readers are waiting
                asked = self._asked = threading.Event()
                self._loop.post(lambda: self._refresh(asked))
        asked.wait(wait)  # a busy loop: serve what we had
        with self._lock:
            return self._data

    def post(self, work: Callable[[], None]) -> None:
        self._loop.post(work)

    def _refresh(self, asked: threading.Event) -> None:
        data = self._build()
        with self._lock:
            self._data, self._at, self._asked = data, time.monotonic(), None
        asked.set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 owner: WebServer) -> None:
        self.owner = owner
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.open: dict[socket.socket, float] = {}
        self.open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        with self.open_lock:
            self.open[request] = time.monotonic()
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.open_lock:
                self.open.pop(request, None)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is not an error; anything else is one line (at most one a
        minute), never a traceback in the journal."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError, socket.timeout)):
            return
        self.owner.note(f"error:{type(error).__name__}",
                        f"a request failed: {type(error).__name__}: {error}")

    def sweep(self) -> None:
        """End connections past their deadline (their thread's read then fails)."""
        now = time.monotonic()
        with self.open_lock:
            late = [conn for conn, opened in self.open.items()
                    if now - opened > CONNECTION_DEADLINE]
        for conn in late:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "zelador"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a request is not an event

    def log_error(self, format: str, *args: Any) -> None:
        """http.server's own refusals (a bad request line, too many headers...): one line a
        minute at most, whatever the rate."""
        self.server.owner.note("bad_request", f"bad request from {self.client_address[0]}: "
                               + (format % args)[:200])

    def parse_request(self) -> bool:
        """http.server's parsing, then stricter: a body only on POST, with one digits-only
        Content-Length and no Transfer-Encoding (so no second request hides in a body), and a
        Host this page answers to (a DNS-rebinding page in a browser sends its own name)."""
        if not super().parse_request():
            return False
        problem = framing_problem(self.command, self.headers)
        status = 400
        if not problem:
            problem = self.server.owner.host_problem(self.headers.get_all("Host") or [])
            status = 421
        if problem:
            self.server.owner.note(f"refused:{status}", f"refused a request from "
                                   f"{self.client_address[0]}: {problem} ({status})")
            self._send(status, f"{problem}\n".encode(), "text/plain")
            return False
        return True

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _refuse(self) -> None:
        self._send(405, b"only GET and HEAD\n", "text/plain", extra={"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def do_POST(self) -> None:
        """`/api/control` with `{"program": NAME, "verb": "restart"|"stop"|"start"}`, when
        web.allow_control, authenticated, with the page's X-CSRF-Token and a same-origin
        Origin (a cross-site form cannot read the token, nor set the header)."""
        owner = self.server.owner
        if not owner.settings.allow_control or self.path != "/api/control":
            self._refuse()
            return
        if not self._authorized():
            return
        origin = self.headers.get("Origin")
        given = self.headers.get("X-CSRF-Token", "").encode("latin-1", "replace")  # as bytes:
        if not hmac.compare_digest(given, owner.token.encode()) or (  # any input is a plain no
                origin is not None and origin.split("://", 1)[-1] != self.headers.get("Host")):
            self._send(403, b"missing or wrong X-CSRF-Token, or a foreign Origin\n",
                       "text/plain")
            return
        try:
            length = int(self.headers.get("Content-Length") or "0")
            if not 0 < length <= 4096:
                raise ValueError(length)
            request = json.loads(self.rfile.read(length))
            program, verb = str(request["program"]), str(request["verb"])
            if verb not in ("restart", "stop", "start"):
                raise ValueError(verb)
        except (ValueError, KeyError, TypeError):
            self._send(400, b'body: {"program": NAME, "verb": "restart"|"stop"|"start"}\n',
                       "text/plain")
            return
        reply = owner.control(program, verb)
        status = 200 if reply.get("ok") else 404 if reply.get("code") == "unknown_program" \
            else 503
        self._send(status, json.dumps(reply, default=str).encode(), "application/json")

    def _answer(self, body: bool) -> None:
        owner = self.server.owner
        if not self._authorized():
            return
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8", body=body)
        elif path == "/api/status":
            data = json.dumps(owner.status(), default=str).encode()
            self._send(200, data, "application/json", body=body)
        elif path == "/metrics":
            self._send(200, owner.metrics(), "text/plain; version=0.0.4; charset=utf-8",
                       body=body)
        else:
            self._send(404, b"not found: try /, /api/status, /metrics\n", "text/plain",
                       body=body)

    def _authorized(self) -> bool:
        """True, or 401 answered (and wrong credentials said, once a minute at most)."""
        given = self.headers.get("Authorization", "")
        if self.server.owner.authorized(given):
            return True
        if given:
            self.server.owner.note("unauthorized", f"wrong credentials from "
                                   f"{self.client_address[0]}")
        self._send(401, b"authentication required\n", "text/plain",
                   extra={"WWW-Authenticate": 'Basic realm="zelador"'})
        return False

    def _send(self, status: int, data: bytes, kind: str, *, body: bool = True,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy",
                         "default-src 'self'; script-src 'unsafe-inline'; "
                         "style-src 'unsafe-inline'")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if status >= 400:  # a refused request's body may be unread: no keep-alive after it
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body:
            self.wfile.write(data)


class WebServer:
    def __init__(self, settings: Web, snapshots: Snapshots, history_file: str | None) -> None:
        from zelador.web.metrics import Metrics  # prometheus_client: only when web is on

        self.settings = settings
        self._snapshots = snapshots
        self._history = history_file
        self._metrics = Metrics()
        self._auth: tuple[tuple[int, ...], frozenset[bytes]] = ((), frozenset())
        self._notes = Notes()
        self.token = secrets.token_urlsafe(24)  # the page's CSRF token, new at every start
        self._controls: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.hosts = Hosts(settings)
        self._server = _Server((settings.host, settings.port), _Handler, self)
        self.port = self._server.server_address[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._server.serve_forever,
                                          kwargs={"poll_interval": 0.5}, name="web", daemon=True),
                         threading.Thread(target=self._sweep, name="web-sweep", daemon=True)]
        for thread in self._threads:
            thread.start()

    def alive(self) -> bool:
        """Both threads run (or the server was closed): the daemon's thread watcher asks."""
        return self._stop.is_set() or all(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _sweep(self) -> None:
        while not self._stop.wait(1.0):
            self._server.sweep()

    def allow(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Give the server the daemon's request handler (run on the loop thread)."""
        self._controls = answer

    def control(self, program: str, verb: str) -> dict[str, Any]:
        """A button press: carried out on the loop thread; its answer within 5 s."""
        if self._controls is None:
            return {"error": "control is off"}
        answer = self._controls
        done = threading.Event()
        box: dict[str, Any] = {}
        state = {"claimed": False}  # by the loop (carried out) or the waiter (gave up)
        lock = threading.Lock()

        def run() -> None:
            with lock:  # a press answered "did not answer" is never carried out later
                if state["claimed"]:
                    return
                state["claimed"] = True
            try:
                box.update(answer({"cmd": verb, "program": program}))
            finally:
                done.set()

        self._snapshots.post(run)
        if done.wait(5.0):
            return box
        with lock:
            if not state["claimed"]:
                state["claimed"] = True
                return {"error": "zelador did not answer within 5s; nothing was done"}
        done.wait()  # the loop took it just now: its answer comes at once
        return box or {"error": "the request failed in zelador (see `zelador status`)"}

    def status(self) -> dict[str, Any]:
        data = dict(self._snapshots.get())
        if self.settings.allow_control and self._controls is not None:
            data["control_token"] = self.token
        if self._history is not None:
            from zelador.store.history import read_events

            try:
                data["events"] = list(reversed(read_events(self._history, limit=EVENTS,
                                                           fields=False)))
            except Exception:  # a damaged or busy history: the page without its events
                data["events"] = []
        return data

    def metrics(self) -> bytes:
        return self._metrics.render(self._snapshots.get())

    def host_problem(self, given: list[str]) -> str:
        return self.hosts.problem(given)

    def authorized(self, header: str) -> bool:
        """Basic credentials against the auth file, compared as bytes (any input is a plain
        no, never an exception)."""
        path = self.settings.auth_file
        if path is None:
            return True
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip().encode("ascii"), validate=True)
        except (ValueError, UnicodeError):
            return False
        found = False
        for line in self._users(path):  # every line compared: the time says nothing
            found |= hmac.compare_digest(given, line)
        return found

    def _users(self, path: str) -> frozenset[bytes]:
        """`user:password` lines. As root the file is opened at every request through the walk
        that checks its whole path (config/host.py), so a link repointed or a mode loosened
        since the last request is refused at once; its lines are read again when that file
        (its inode, size or mtime) changed. Unsafe or unreadable: nobody gets in."""
        try:
            fd = open_checked(path, "web.auth_file", secret=True) if running_as_root() else \
                os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (OSError, UnsafeFileError) as exc:
            self.note("auth_file", f"nobody can log in: {exc}")
            return frozenset()
        try:
            info = os.fstat(fd)
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            if key != self._auth[0]:
                with os.fdopen(os.dup(fd), "rb") as stream:
                    data = stream.read(AUTH_CAP)
                users = frozenset(line.strip() for line in data.splitlines() if b":" in line)
                self._auth = (key, users)
            return self._auth[1]
        except OSError as exc:
            self.note("auth_file", f"nobody can log in: cannot read {path}: {exc.strerror}")
            return frozenset()
        finally:
            os.close(fd)

    def note(self, kind: str, text: str) -> None:
        """One line on stderr (the journal) per kind of trouble per minute, at most."""
        line = self._notes.due(kind, text, time.monotonic())
        if line:
            with contextlib.suppress(OSError, ValueError):
                print(f"zelador: web: {line}", file=sys.stderr, flush=True)
