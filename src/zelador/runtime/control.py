"""The Unix socket the CLI talks to: one JSON request line in, one JSON reply out, then EOF.

Requests: {"cmd": "status"|"checks"|"jobs"}, {"cmd": "start"|"stop"|"restart", "program": NAME}
and {"cmd": "report", "job": NAME, "verb": ...}; runtime/controlwire.py checks each before it is
believed. The socket is created mode 0600 (root only), or 0660 for `control.group`, whose members
may send every request above and nothing else; the peer's credentials (SO_PEERCRED) are checked
again on each connection, so a socket file whose mode was changed lets no one else in.

The server side never blocks the supervision loop: a client that has not sent its request within
CLIENT_TIMEOUT is dropped; a reply larger than the socket buffer is kept and written as the
client reads it (a second selector, watched by the loop through its own fd), so a status of any
size arrives whole, and a client that stops reading is dropped after REPLY_TIMEOUT. At most
MAX_CLIENTS connections are held at once; one more is answered `busy` and closed.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import selectors
import socket
import struct
import time
from typing import Any

from zelador.errors import ConfigError, ControlError, UsageError
from zelador.runtime.controlwire import MAX_REQUEST, BadRequest, encode, parse
from zelador.store.files import prepare_dir

CLIENT_TIMEOUT = 2.0
REPLY_TIMEOUT = 10.0
MAX_CLIENTS = 256  # connections held at once (each at most MAX_REQUEST in and its reply out)
BACKLOG = socket.SOMAXCONN  # 50 pollers and root's own `zelador status` all get in
MAX_REPLY = 256 * 1024 * 1024  # the client's limit on a reply it reads
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
ROOT_ONLY = ("reload",)  # not for control.group: root's config is root's to apply


class ControlServer:
    def __init__(self, path: str, group: str | None = None) -> None:
        self.path = path
        folder = os.path.dirname(path)
        prepare_dir(folder, 0o711)  # root's, or refused (store/files.py): no link is planted
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.sock.bind(path)
        finally:
            os.umask(old)
        self.gid: int | None = None
        if group:
            self.gid = grp.getgrnam(group).gr_gid
            os.chown(path, -1, self.gid)
            os.chmod(path, 0o660)
        self.sock.listen(BACKLOG)
        self.sock.setblocking(False)
        self.clients: dict[int, tuple[socket.socket, bytes, float]] = {}  # fd -> (conn, buf, deadline)
        self.writing: dict[int, tuple[socket.socket, memoryview]] = {}  # replies still going out
        self._writer = selectors.DefaultSelector()  # its fd is readable when a reply can go on
        self.refused = 0  # connections turned away (busy, or not allowed)

    def fileno(self) -> int:
        return self.sock.fileno()

    def writer_fileno(self) -> int:
        """Watch this for reading: it is ready when a waiting reply can be written further."""
        return self._writer.fileno()

    def accept(self, now: float) -> int | None:
        """Take a waiting client; return its fd for the selector (None if nobody was there,
        or the client was turned away with one line)."""
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # ECONNABORTED, EMFILE...: the next turn tries again
            return None
        conn.setblocking(False)
        refusal = None
        if len(self.clients) + len(self.writing) >= MAX_CLIENTS:
            refusal = {"error": f"zelador is busy ({MAX_CLIENTS} control connections open); "
                                "try again", "code": "busy"}
        else:
            refusal = self._not_allowed(conn)
        if refusal is not None:
            self.refused += 1
            with contextlib.suppress(OSError):
                conn.send(encode(refusal))
            conn.close()
            return None
        self.clients[conn.fileno()] = (conn, b"", now + CLIENT_TIMEOUT)
        return conn.fileno()

    def _not_allowed(self, conn: socket.socket) -> dict[str, Any] | None:
        pid, uid, gid = peer(conn)
        if uid in (0, os.geteuid()) or (self.gid is not None and self.gid in groups(pid, gid)):
            return None
        return {"error": f"permission denied: uid {uid} is neither root nor in control.group",
                "code": "denied"}

    def receive(self, fd: int) -> tuple[socket.socket, dict[str, Any]] | None:
        """Read what a client sent; once its request line is complete (or can no longer be),
        return the connection and the request, or an error reply as {"error": ...}."""
        conn, data, deadline = self.clients[fd]
        try:
            chunk = conn.recv(MAX_REQUEST + 1)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            chunk = b""
        data += chunk
        if chunk and b"\n" not in data and len(data) <= MAX_REQUEST:
            self.clients[fd] = (conn, data, deadline)
            return None
        del self.clients[fd]
        line, newline, _ = data.partition(b"\n")
        try:
            if not newline and len(line) <= MAX_REQUEST:
                raise BadRequest("the request ended before its end of line")
            request = parse(line)
        except BadRequest as exc:
            return conn, {"error": f"bad request: {exc}", "code": "usage"}
        if request.get("cmd") in ROOT_ONLY and peer(conn)[1] not in (0, os.geteuid()):
            return conn, {"error": f"permission denied: {request['cmd']} is for root (systemctl "
                                   "reload zelador)", "code": "usage"}
        request["_by"] = who(conn)
        return conn, request

    def deadline(self, fd: int) -> float:
        """When a client that has not sent its request by then is dropped."""
        return self.clients[fd][2] if fd in self.clients else 0.0

    def drop(self, fd: int, conn: object = None) -> bool:
        """Drop a client that is still waiting (it was too slow); True if it was. With `conn`,
        only if `fd` still is that connection."""
        entry = self.clients.get(fd)
        if entry is None or (conn is not None and entry[0] is not conn):
            return False
        del self.clients[fd]
        entry[0].close()
        return True

    def reply(self, conn: socket.socket, answer: dict[str, Any]) -> bool:
        """Send `answer` and close; what does not fit the socket now is written as the client
        reads (see `flush`). True if some of it is still waiting to go out."""
        data = memoryview(encode(answer))
        sent = _send(conn, data)
        if sent is None or sent == len(data):
            conn.close()
            return False
        self.writing[conn.fileno()] = (conn, data[sent:])
        self._writer.register(conn, selectors.EVENT_WRITE)
        return True

    def flush(self) -> None:
        """Write on every waiting reply whose client has room (never blocks)."""
        for key, _ in self._writer.select(0):
            fd = key.fd
            conn, rest = self.writing[fd]
            sent = _send(conn, rest)
            if sent is None or sent == len(rest):
                self._finish(fd)
            else:
                self.writing[fd] = (conn, rest[sent:])

    def give_up(self, fd: int, conn: object) -> None:
        """Drop the reply to `conn` if its client has not read it all by now."""
        entry = self.writing.get(fd)
        if entry is not None and entry[0] is conn:
            self._finish(fd)

    def _finish(self, fd: int) -> None:
        conn, _ = self.writing.pop(fd)
        with contextlib.suppress(KeyError, ValueError):
            self._writer.unregister(conn)
        conn.close()

    def close(self) -> None:
        for conn, _, _ in self.clients.values():
            conn.close()
        self.clients.clear()
        for fd in list(self.writing):
            self._finish(fd)
        self._writer.close()
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _send(conn: socket.socket, data: memoryview) -> int | None:
    """Bytes taken by the socket now; None if the client is gone."""
    try:
        return conn.send(data)
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError:
        return None


def peer(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end."""
    pid, uid, gid = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                 _CRED.size))
    return pid, uid, gid


def groups(pid: int, gid: int) -> set[int]:
    """The groups of process `pid` as the kernel holds them (its gid if it already ended)."""
    found = {gid}
    with contextlib.suppress(OSError, ValueError), \
            open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("Groups:"):
                found.update(int(g) for g in line.split()[1:])
                break
    return found


def who(conn: socket.socket) -> str:
    """'uid 0' or 'uid 1001 (pdv)': for the journal line of a start/stop/restart."""
    with contextlib.suppress(OSError):
        _, uid, _ = peer(conn)
        try:
            import pwd

            return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
        except KeyError:
            return f"uid {uid}"
    return "unknown"


def ask(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its reply (read to its end)."""
    deadline = time.monotonic() + timeout
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    data = bytearray()
    try:
        _connect(sock, path, deadline)
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(encode(request))  # turned away at once: its one line is still there
        while len(data) <= MAX_REPLY:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                chunk = sock.recv(1024 * 1024)
            except ConnectionResetError:  # turned away with our request unread: after its line
                if not data:
                    raise
                break
            if not chunk:
                break
            data += chunk
    except FileNotFoundError:
        raise ControlError(f"zelador is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise ControlError(f"zelador is not running (nobody listens on {path})") from None
    except PermissionError:
        raise ControlError(f"permission denied on {path} (run as root, or set control.group)"
                           ) from None
    except socket.timeout:
        got = f" (got {len(data)} bytes of the reply)" if data else ""
        raise ControlError(f"zelador at {path} did not answer within {timeout:g}s{got}") from None
    except OSError as exc:
        raise ControlError(f"cannot talk to zelador at {path}: {exc}") from None
    finally:
        sock.close()
    if not data.endswith(b"\n"):
        if not data:
            raise ControlError(f"zelador at {path} closed the connection without a reply")
        why = "more than the client takes" if len(data) > MAX_REPLY else "no end of line"
        raise ControlError(f"truncated reply from zelador at {path}: {len(data)} bytes, {why}")
    try:
        answer = json.loads(bytes(data))
    except ValueError:
        raise ControlError(f"garbled reply from zelador at {path}: {bytes(data[:80])!r}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"garbled reply from zelador at {path}")
    if answer.get("error"):
        if answer.get("code") in ("unknown_program", "unknown_job", "usage"):
            raise UsageError(str(answer["error"]))
        if answer.get("code") == "config":  # a reload refused: the config's own error, exit 78
            raise ConfigError(str(answer["error"]))
        raise ControlError(str(answer["error"]))
    return answer


def _connect(sock: socket.socket, path: str, deadline: float) -> None:
    """Connect, waiting while the daemon's listen queue is full (EAGAIN on a Unix socket)."""
    pause = 0.005
    while True:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                raise socket.timeout("the listen queue stayed full") from None
            time.sleep(pause)
            pause = min(0.1, pause * 2)
