"""The Unix socket the CLI talks to: one JSON request line in, one JSON reply line out.

Requests: {"cmd": "status"} and {"cmd": "start"|"stop"|"restart", "program": NAME}.
The socket is created mode 0600 (root only), or 0660 for `control.group`. The server side never
blocks the supervision loop: clients get a short deadline, and a silent one is dropped.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
from typing import Any

from zelador.errors import ControlError, UsageError
from zelador.store.files import prepare_dir

MAX_REQUEST = 128 * 1024  # a `zelador exec` report carries up to 10 kB of output, JSON-escaped
CLIENT_TIMEOUT = 2.0


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
        if group:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
            os.chmod(path, 0o660)
        self.sock.listen(8)
        self.sock.setblocking(False)

        self.clients: dict[int, tuple[socket.socket, bytes, float]] = {}  # fd -> (conn, buf, deadline)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self, now: float) -> int | None:
        """Take a waiting client; return its fd for the selector (None if nobody was there)."""
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return None
        conn.setblocking(False)
        self.clients[conn.fileno()] = (conn, b"", now + CLIENT_TIMEOUT)
        return conn.fileno()

    def receive(self, fd: int) -> tuple[socket.socket, dict[str, Any]] | None:
        """Read what a client sent; once its request line is complete, return it."""
        conn, data, deadline = self.clients[fd]
        try:
            chunk = conn.recv(MAX_REQUEST)
        except BlockingIOError:
            return None
        except OSError:
            chunk = b""
        data += chunk
        if chunk and b"\n" not in data and len(data) < MAX_REQUEST:
            self.clients[fd] = (conn, data, deadline)
            return None
        del self.clients[fd]
        try:
            request = json.loads(data.split(b"\n", 1)[0] or b"null")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            request = {"cmd": None, "garbled": data[:80].decode("utf-8", "replace")}
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

    @staticmethod
    def reply(conn: socket.socket, answer: dict[str, Any]) -> None:
        """Answers are small: they fit the socket buffer, so this does not block."""
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer).encode() + b"\n")
        conn.close()

    def close(self) -> None:
        for conn, _, _ in self.clients.values():
            conn.close()
        self.clients.clear()
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def ask(path: str, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the running daemon and return its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
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
    except OSError as exc:
        raise ControlError(f"cannot talk to zelador at {path}: {exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError(f"garbled reply from zelador at {path}: {data[:80]!r}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"garbled reply from zelador at {path}")
    if answer.get("error"):
        if answer.get("code") in ("unknown_program", "unknown_job", "usage"):
            raise UsageError(str(answer["error"]))
        raise ControlError(str(answer["error"]))
    return answer
