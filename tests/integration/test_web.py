"""The status page, /api/status and /metrics served by the real daemon, asked with real HTTP:
what they show, auth, wrong methods, idle and half-sent requests, too many connections."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Mfe, Zelador, free_port, pids_named, wait_for
from zelador.web.server import IDLE_TIMEOUT, MAX_CLIENTS


def get(url: str, auth: str | None = None, method: str = "GET") -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, method=method)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def lint(metrics: bytes) -> None:
    """promtool (Debian's prometheus package) finds nothing to say about our metrics."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/test.sh installs prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_the_shipped_prometheus_rules_are_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/test.sh installs prometheus)")
    rules = Path(__file__).parents[2] / "docs" / "prometheus" / "zelador-rules.yml"
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def web_config(mfe: Mfe, port: int, extra: str = "") -> str:
    return mfe.config(defaults=True, monitor=False) + f"""jobs: {{backup: {{every: 1h}}}}
intake: {{listen: off}}
system: {{disk_root: {{disk: /, above: 99.99%}}}}
web: {{listen: "127.0.0.1:{port}"{extra}}}
"""


def test_status_metrics_and_page_follow_a_kill(tmp_path: Path, mfe: Mfe) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    zel = Zelador(tmp_path, web_config(mfe, port)).start()
    try:
        zel.wait_event("started", "comunicador")
        ok, body, headers = get(f"{base}/api/status")
        assert ok == 200
        data = json.loads(body)
        cli = json.loads(subprocess.run([sys.executable, "-m", "zelador", "status", "--json",
                                         "--socket", zel.socket], capture_output=True,
                                        text=True).stdout)
        assert set(cli) <= set(data)  # the same schema as `zelador status --json`, and more
        assert {"host", "incidents", "events", "loop_lag"} <= set(data)
        (prog,) = data["programs"]
        assert (prog["name"], prog["state"], prog["restarts"]) == ("comunicador", "RUNNING", 0)
        assert data["jobs"][0]["name"] == "backup" and data["checks"][0]["name"] == "disk_root"
        assert headers["Cache-Control"] == "no-store"
        (pid,) = pids_named(mfe.com)
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("started", "comunicador", count=2)

        def restarts() -> int:
            return int(json.loads(get(f"{base}/api/status")[1])["programs"][0]["restarts"])

        wait_for(lambda: restarts() == 1, 10, "the restart counted on the page's API")
        families = {f.name: f for f in text_string_to_metric_families(
            get(f"{base}/metrics")[1].decode())}
        assert {"zelador_program_up", "zelador_program_state", "zelador_program_restarts",
                "zelador_job_state", "zelador_check_ok", "zelador_build_info",
                "zelador_loop_lag_seconds", "zelador_scan_duration_seconds",
                "zelador_open_incidents"} <= set(families)
        restarts_total = {s.labels["program"]: s.value for s in
                          families["zelador_program_restarts"].samples
                          if s.name == "zelador_program_restarts_total"}
        assert restarts_total == {"comunicador": 1.0}
        lint(get(f"{base}/metrics")[1])
        page = get(f"{base}/")[1].decode()
        assert "<title>zelador</title>" in page and "http" not in page.split("<script>")[1]
        events = json.loads(get(f"{base}/api/status")[1])["events"]
        assert any(e["kind"] == "exited" for e in events)  # from the history store
    finally:
        zel.stop()


def test_wrong_methods_paths_and_auth(tmp_path: Path, mfe: Mfe) -> None:
    users = tmp_path / "web.auth"
    users.write_text("admin:s3cret\n")
    users.chmod(0o600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    zel = Zelador(tmp_path, web_config(mfe, port, f", auth_file: {users}")).start()
    try:
        status, _, headers = get(f"{base}/api/status")
        assert status == 401 and "Basic" in headers["WWW-Authenticate"]
        assert get(f"{base}/api/status", "admin:wrong")[0] == 401
        assert get(f"{base}/api/status", "admin:s3cret")[0] == 200
        assert get(f"{base}/metrics", "admin:s3cret")[0] == 200
        assert get(f"{base}/nope", "admin:s3cret")[0] == 404
        status, _, headers = get(f"{base}/", "admin:s3cret", method="POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        assert get(f"{base}/", "admin:s3cret", method="DELETE")[0] == 405
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n")
            assert conn.recv(200).startswith(b"HTTP/1.1 431")  # a header line too long
    finally:
        zel.stop()


def test_idle_half_sent_and_too_many_connections_are_bounded(tmp_path: Path, mfe: Mfe) -> None:
    port = free_port()
    zel = Zelador(tmp_path, web_config(mfe, port)).start()
    held: list[socket.socket] = []
    try:
        slow = socket.create_connection(("127.0.0.1", port), timeout=IDLE_TIMEOUT + 10)
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        assert slow.recv(100) == b""  # closed by the server, not held for ever
        assert time.monotonic() - started < IDLE_TIMEOUT + 5
        slow.close()
        for _ in range(MAX_CLIENTS):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET / HTTP/1.1\r\n")  # half a request: holds a slot
            held.append(conn)
        time.sleep(0.5)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert extra.recv(100).startswith(b"HTTP/1.1 503")
        extra.close()
        for conn in held:
            conn.close()
        wait_for(lambda: get(f"http://127.0.0.1:{port}/api/status")[0] == 200, 15,
                 "slots free again")
    finally:
        for conn in held:
            conn.close()
        zel.stop()


def test_buttons_restart_only_with_auth_token_and_same_origin(tmp_path: Path, mfe: Mfe) -> None:
    users = tmp_path / "web.auth"
    users.write_text("admin:s3cret\n")
    users.chmod(0o600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    zel = Zelador(tmp_path, web_config(mfe, port, f", auth_file: {users}, "
                                       "allow_control: true")).start()
    try:
        zel.wait_event("started", "comunicador")
        token = json.loads(get(f"{base}/api/status", "admin:s3cret")[1])["control_token"]
        body = json.dumps({"program": "comunicador", "verb": "restart"}).encode()

        def post(headers: dict[str, str], data: bytes = body) -> int:
            request = urllib.request.Request(f"{base}/api/control", data=data, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      **headers})
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        auth = "Basic " + base64.b64encode(b"admin:s3cret").decode()
        assert post({"X-CSRF-Token": token}) == 401  # no credentials
        assert post({"Authorization": auth}) == 403  # no token: a cross-site form
        assert post({"Authorization": auth, "X-CSRF-Token": token,
                     "Origin": "http://example.net"}) == 403
        assert post({"Authorization": auth, "X-CSRF-Token": token}, b"{}") == 400
        assert post({"Authorization": auth, "X-CSRF-Token": token},
                    b'{"program": "nope", "verb": "restart"}') == 404
        assert post({"Authorization": auth, "X-CSRF-Token": token,
                     "Origin": f"http://127.0.0.1:{port}"}) == 200
        zel.wait_event("started", "comunicador", count=2)
        assert "restart requested" in zel.matching("stopping", "comunicador")[0]["message"]
    finally:
        zel.stop()
