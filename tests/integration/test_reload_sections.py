"""A reload applies every section, `web:` included; what only a restart can apply is refused
with one line. Real daemon, real HTTP."""

from __future__ import annotations

import base64
import json
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import Mfe, Zelador, free_port, wait_for
from zelador.config.keys import SECTIONS
from zelador.runtime.daemon import APPLIED_ON_RELOAD, RESTART_ONLY


def test_every_top_level_key_is_applied_on_reload_or_restart_only():
    top = {key.name for key in SECTIONS[0].keys}
    assert set(APPLIED_ON_RELOAD) | set(RESTART_ONLY) == top
    assert not set(APPLIED_ON_RELOAD) & set(RESTART_ONLY)
    control = next(key for key in SECTIONS[0].keys if key.name == "control")
    assert "restart" in control.meaning  # documented in zelador.yaml(5)


def status(port: int, auth: bool = True) -> int:
    try:
        with urllib.request.urlopen(get(port, auth), timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0  # refused: nothing listens


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


AUTH = "Basic " + base64.b64encode(b"admin:s3cret").decode()


def get(port: int, auth: bool = True) -> urllib.request.Request:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/status")
    if auth:
        request.add_header("Authorization", AUTH)
    return request


def control(port: int, token: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/control", method="POST",
        data=json.dumps({"program": "comunicador", "verb": "restart"}).encode(),
        headers={"Content-Type": "application/json", "X-CSRF-Token": token,
                 "Authorization": AUTH})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def reload(zel: Zelador, text: str, count: int) -> None:
    zel.write_config(text)
    zel.signal(signal.SIGHUP)
    zel.wait_event("reloaded", count=count)


def test_web_changes_take_effect_on_reload(tmp_path: Path, mfe: Mfe) -> None:
    base = mfe.config(monitor=False) + "intake: {listen: off}\n"
    first, second = free_port(), free_port()
    users = tmp_path / "web.auth"
    users.write_text("admin:s3cret\n")
    users.chmod(0o600)
    zel = Zelador(tmp_path, base + f'web: {{listen: "127.0.0.1:{first}", auth_file: {users}, '
                  "allow_control: true}\n").start()
    try:
        zel.wait_event("started", "comunicador")
        assert status(first) == 200 and status(first, auth=False) == 401
        with urllib.request.urlopen(get(first)) as answer:
            token = json.loads(answer.read())["control_token"]
        # allow_control removed: the button is refused at once, and nothing restarts
        reload(zel, base + f'web: {{listen: "127.0.0.1:{first}", auth_file: {users}}}\n', 1)
        wait_for(lambda: status(first) == 200, 10, "the page back after the reload")
        assert control(first, token) == 405
        assert len(zel.matching("started", "comunicador")) == 1
        # a new address, and no auth_file: the old port closes, the new one serves anybody
        reload(zel, base + f'web: {{listen: "127.0.0.1:{second}"}}\n', 2)
        wait_for(lambda: status(second, auth=False) == 200, 10, "the page on its new port")
        assert not listening(first)
        # listen: off
        reload(zel, base + "web: {listen: off}\n", 3)
        wait_for(lambda: not listening(second), 10, "the page gone")
        assert zel.program("comunicador")["state"] == "RUNNING"
    finally:
        zel.stop()


def test_a_control_change_is_refused_on_reload_with_one_line(tmp_path: Path, mfe: Mfe) -> None:
    zel = Zelador(tmp_path, mfe.config(monitor=False)).start()
    try:
        zel.write_config(mfe.config(monitor=False) + "control: {group: root}\n")
        zel.signal(signal.SIGHUP)
        zel.wait_event("reloaded")
        [line] = zel.matching("config_rejected")
        assert "control" in line["message"] and "restart" in line["message"]
        assert zel.status()["programs"][0]["state"] == "RUNNING"  # the old socket still answers
    finally:
        zel.stop()
