"""The status page's server against what a hostile client sends, on loopback: strict framing,
Host (DNS rebinding), credentials as bytes, resets; and a bounded fuzz of the request parser
and the auth header. Never a traceback, never 200 without credentials when auth is on, at most
one line per kind of trouble."""

from __future__ import annotations

import base64
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zelador.config.model import Web
from zelador.web.server import Snapshots, WebServer

GOOD = base64.b64encode(b"admin:right").decode()


class NoLoop:
    """The loop's side of a snapshot, on a thread of its own."""

    def post(self, work: Callable[[], None]) -> None:
        threading.Thread(target=work).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebServer]:
    users = tmp_path / "users"
    users.write_text("admin:right\nçaixa:sénha\n")
    users.chmod(0o600)
    web = WebServer(Web(enabled=True, host="127.0.0.1", port=0, auth_file=str(users),
                        hosts=("pos-1.lan",)),
                    Snapshots(NoLoop(), lambda: {"programs": []}), None)  # type: ignore[arg-type]
    web.start()
    try:
        yield web
    finally:
        web.close()


def exchange(port: int, data: bytes, reset: bool = False) -> bytes:
    """Send `data`, end our side, read the whole answer (or RST at once with `reset`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            conn.sendall(data)
            if reset:
                return b""
            conn.shutdown(socket.SHUT_WR)
        except OSError:  # the server already answered and closed
            pass
        out = b""
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def request(port: int, head: str, body: bytes = b"", auth: str | None = GOOD) -> bytes:
    lines = head.replace("PORT", str(port))
    if auth is not None:
        lines += f"Authorization: Basic {auth}\r\n"
    return exchange(port, lines.encode("latin-1") + b"\r\n" + body)


def test_credentials_of_any_bytes_are_a_plain_401(server: WebServer, capfd: Any) -> None:
    port = server.port
    base = "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
    assert status(request(port, base)) == 200
    assert status(request(port, base, auth=base64.b64encode("çaixa:sénha".encode()).decode())) \
        == 200  # UTF-8 credentials work
    for given in (base64.b64encode("admin:rïght".encode()).decode(),
                  base64.b64encode(b"\xff\xfe:\x80").decode(), "Zm9v\u00e9", "!!!", "",
                  base64.b64encode("çaixa:sénha".encode("latin-1")).decode()):
        assert status(request(port, base, auth=given)) == 401, given
    assert status(request(port, base, auth=None)) == 401
    assert status(request(port, base.replace("\r\n", "\r\nAuthorization: Bearer x\r\n", 1),
                          auth=None)) == 401
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count("wrong credentials") <= 1


def test_strict_framing(server: WebServer, capfd: Any) -> None:
    port = server.port
    host = "Host: 127.0.0.1:PORT\r\n"
    smuggled = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    cases = {
        "a GET with a body": (f"GET / HTTP/1.1\r\n{host}Content-Length: {len(smuggled)}\r\n",
                              smuggled),
        "Content-Length 1_0": (f"POST /api/control HTTP/1.1\r\n{host}Content-Length: 1_0\r\n",
                               b"x" * 10),
        "Content-Length +5": (f"POST /api/control HTTP/1.1\r\n{host}Content-Length: +5\r\n",
                              b"x" * 5),
        "two lengths": (f"POST /api/control HTTP/1.1\r\n{host}Content-Length: 1\r\n"
                        "Content-Length: 1\r\n", b"x"),
        "CL and TE": (f"POST /api/control HTTP/1.1\r\n{host}Content-Length: 3\r\n"
                      "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        "TE on GET": (f"GET / HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    }
    for what, (head, body) in cases.items():
        answer = request(port, head, body)
        assert status(answer) == 400, what
        assert answer.count(b"HTTP/1.1 ") == 1, f"{what}: a second request was answered"
    assert status(request(port, f"GET / HTTP/1.1\r\n{host}Content-Length: 0\r\n")) == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count("(400)") == 1  # one line a minute


def test_a_host_that_is_not_this_page_gets_421(server: WebServer, capfd: Any) -> None:
    port = server.port
    for host in ("127.0.0.1:PORT", "localhost:PORT", "LOCALHOST", "[::1]:PORT", "pos-1.lan"):
        assert status(request(port, f"GET / HTTP/1.1\r\nHost: {host}\r\n")) == 200, host
    for host in ("evil.example:PORT", "127.0.0.1.evil.example", "localhost.", "pos-1.lan.x"):
        answer = request(port, f"GET /api/status HTTP/1.1\r\nHost: {host}\r\n")
        assert status(answer) == 421 and b'"programs"' not in answer, host
    assert status(request(port, "GET / HTTP/1.1\r\n")) == 421  # no Host at all
    assert status(request(port, "GET / HTTP/1.1\r\nHost: localhost\r\nHost: evil\r\n")) == 421
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count("(421)") == 1


def test_clients_that_go_away_are_not_errors(server: WebServer, capfd: Any) -> None:
    for data in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"GET /api/status HTTP/1.1\r\n"
                 b"Host: 127.0.0.1\r\nAuthorization: Basic " + GOOD.encode() + b"\r\n\r\n"):
        for _ in range(20):
            exchange(server.port, data, reset=True)
    assert status(request(server.port, "GET / HTTP/1.1\r\nHost: localhost\r\n")) == 200
    assert capfd.readouterr().err == ""


def fuzzed(rng: random.Random) -> bytes:
    """A request made of plausible pieces, mangled."""
    method = rng.choice(["GET"] * 6 + ["HEAD", "POST", "POST", "PUT", "G\x00T", "", "GET GET"])
    path = rng.choice(["/", "/api/status", "/metrics", "/api/control"] * 3 + ["*", "//x", "/%00",
                       "/" + "a" * rng.randint(0, 70000), "http://evil/"])
    version = rng.choice(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2", "HTTP/1.1 x", "", "HTTP/9.9"])
    lines = [f"{method} {path} {version}".encode("latin-1")]
    if rng.random() < 0.7:
        lines.append(b"Host: " + rng.choice([b"127.0.0.1", b"localhost:1", b"evil", b"[::1]"]))
    for _ in range(rng.randint(0, 6)):
        name = rng.choice([b"Host", b"Content-Length", b"Transfer-Encoding", b"Authorization",
                           b"X-CSRF-Token", b"Origin", b"Expect", b"Connection", b" Host",
                           b"Host ", bytes(rng.randrange(256) for _ in range(5))])
        value = rng.choice([b"127.0.0.1", b"localhost", b"evil", b"0", b"5", b"1_0", b"-1",
                            b"chunked", b"100-continue", b"Basic " + GOOD.encode()[:-2],
                            b"Basic " + GOOD.encode(), b"basic " + GOOD.encode(),
                            b"Basic " + base64.b64encode(bytes(rng.randrange(256)
                                                               for _ in range(9))),
                            b"Basic \xff\xfe\xfd", b"Basic", b"basic   " + b"=" * 9,
                            b"x" * rng.randint(0, 70000), b"keep-alive",
                            bytes(rng.randrange(256) for _ in range(12))])
        lines.append(name + b":" + rng.choice([b" ", b"", b"\t"]) + value)
    data = rng.choice([b"\r\n"] * 4 + [b"\n"]).join(lines) + rng.choice(
        [b"\r\n\r\n"] * 6 + [b"\n\n", b"\r\n", b""])
    data += rng.choice([b"", b"x" * rng.randint(0, 10), b"GET / HTTP/1.1\r\nHost: localhost\r\n"
                        b"\r\n", bytes(rng.randrange(256) for _ in range(rng.randint(0, 50)))])
    if rng.random() < 0.1:  # a byte or a few flipped anywhere
        raw = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if raw:
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        data = bytes(raw)
    return data


def test_fuzzed_requests_never_get_a_traceback_nor_a_200_without_credentials(
        server: WebServer, capfd: Any) -> None:
    rng = random.Random(20)  # the same 300 requests every run
    seen: set[int] = set()
    for i in range(300):
        data = fuzzed(rng)
        answer = exchange(server.port, data)
        seen.add(status(answer))
        if GOOD.encode() + b"\r" not in data:  # (no whole valid credentials)
            assert b" 200 " not in answer.split(b"\r\n", 1)[0], (i, data[:300], answer[:300])
    assert {400, 401, 421} <= seen and seen & {200, 404}  # the fuzz reached every gate
    assert status(request(server.port, "GET / HTTP/1.1\r\nHost: localhost\r\n")) == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err[-3000:]
    assert len(err.splitlines()) <= 12, err  # one line per kind, at most, in a minute


def test_a_csrf_token_of_any_bytes_is_a_plain_403(tmp_path: Path, capfd: Any) -> None:
    users = tmp_path / "users"
    users.write_text("admin:right\n")
    users.chmod(0o600)
    web = WebServer(Web(enabled=True, host="127.0.0.1", port=0, auth_file=str(users),
                        allow_control=True),
                    Snapshots(NoLoop(), lambda: {}), None)  # type: ignore[arg-type]
    asked: list[dict[str, Any]] = []
    web.allow(lambda request: asked.append(request) or {"ok": True})  # type: ignore[func-returns-value]
    web.start()
    try:
        body = b'{"program": "comunicador", "verb": "restart"}'
        head = (f"POST /api/control HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}"
                "\r\nX-CSRF-Token: {token}\r\n")
        for token in ("\u00e9t\u00e9", "", "x" * 500):
            assert status(request(web.port, head.format(token=token), body)) == 403, token
        assert asked == []
        assert status(request(web.port, head.format(token=web.token), body)) == 200
        assert asked == [{"cmd": "restart", "program": "comunicador"}]
    finally:
        web.close()
    assert "Traceback" not in capfd.readouterr().err
