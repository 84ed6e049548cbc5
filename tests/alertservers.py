"""Real servers for the alert tests: a webhook receiver, the subset of the Telegram Bot API
zelador uses (with its real error shapes), and an SMTP server with STARTTLS (aiosmtpd)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import free_port


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class Receiver:
    """A webhook endpoint on 127.0.0.1: records each POST's JSON; `mode` ok | hang | fail."""

    def __init__(self) -> None:
        self.posts: list[tuple[float, dict[str, Any]]] = []
        self.mode = "ok"
        self.hung = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if owner.mode == "hang":
                    owner.hung.wait(60)  # never answers (until the test ends)
                    return
                if owner.mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"broken")
                    return
                owner.posts.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/zelador"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [a for _, body in self.posts for a in body["alerts"]]

    def close(self) -> None:
        self.hung.set()
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Message:
    chat_id: str
    message_id: int
    text: str
    edits: int = 0


@dataclass
class FakeTelegram:
    """sendMessage, editMessageText, deleteMessage, answering like the Bot API does."""

    token: str
    messages: dict[int, Message] = field(default_factory=dict)
    deleted: list[int] = field(default_factory=list)
    calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    throttle: int = 0  # answer this many calls with 429 retry_after
    undeletable: bool = False  # deleteMessage: "message can't be deleted"
    migrate_from: str | None = None  # this chat became a supergroup
    migrate_to: str = "-1009999"
    echo: bool = False  # answer every call 400 quoting the URL it was asked (percent-encoded)

    def __post_init__(self) -> None:
        owner = self
        self._next = 100

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                params = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, answer = owner.answer(self.path, params)
                if owner.echo:
                    status, answer = 400, {"ok": False, "error_code": 400, "description": (
                        f"Bad Request: no such method at {owner.url}"
                        f"{urllib.parse.quote(self.path, safe='/')}")}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = path[len(prefix):]
        self.calls.append((method, params))
        if self.throttle > 0:
            self.throttle -= 1
            return 429, {"ok": False, "error_code": 429,
                         "description": "Too Many Requests: retry after 1",
                         "parameters": {"retry_after": 1}}
        chat = params.get("chat_id", "")
        if self.migrate_from is not None and chat == self.migrate_from:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: group chat "
                         "was upgraded to a supergroup chat",
                         "parameters": {"migrate_to_chat_id": int(self.migrate_to)}}
        if method == "sendMessage":
            if not 1 <= len(params.get("text", "")) <= 4096:
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: message is too long"}
            self._next += 1
            self.messages[self._next] = Message(chat, self._next, params["text"])
            return 200, {"ok": True, "result": {"message_id": self._next,
                                                "chat": {"id": int(chat)}, "text": params["text"]}}
        message_id = int(params.get("message_id", "0"))
        found = self.messages.get(message_id)
        if method == "deleteMessage":
            if found is None:
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: message to delete not found"}
            if self.undeletable:
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: message can't be deleted"}
            del self.messages[message_id]
            self.deleted.append(message_id)
            return 200, {"ok": True, "result": True}
        if method == "editMessageText":
            if found is None:
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: message to edit not found"}
            if found.text == params.get("text"):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message "
                             "is not modified: specified new message content and reply markup "
                             "are exactly the same as a current content and reply markup of the "
                             "message"}
            found.text = params["text"]
            found.edits += 1
            return 200, {"ok": True, "result": {"message_id": message_id}}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def throwaway_ca(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (cert, key), made with openssl."""
    cert, key = folder / "smtp.crt", folder / "smtp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class Smtp:
    """aiosmtpd on 127.0.0.1 with STARTTLS required and AUTH PLAIN/LOGIN (user/password)."""

    def __init__(self, folder: Path, port: int | None = None, user: str = "pos",
                 password: str = "s3cret") -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.cert, self.key = throwaway_ca(folder)
        self.received: list[tuple[float, Any]] = []
        self.port = port or free_port()
        owner = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                from email import message_from_bytes
                from email.policy import default

                owner.received.append((time.time(), message_from_bytes(envelope.content,
                                                                       policy=default)))
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> Any:
            ok = (auth_data.login.decode(), auth_data.password.decode()) == (user, password)
            return AuthResult(success=ok, handled=False)  # aiosmtpd answers 535 itself

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        self._make = lambda: Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                        tls_context=context, require_starttls=True,
                                        authenticator=authenticator, auth_require_tls=True)
        self.controller: Any = None

    def start(self) -> Smtp:
        self.controller = self._make()
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


