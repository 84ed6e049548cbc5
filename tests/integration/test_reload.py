"""`zelador reload` (the unit's ExecReload=): the daemon's verdict, not a signal sent and
forgotten; the config identity (sha256 over the files, the files, the last reload) that status,
/api/status, /metrics and the fleet node show."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
from typing import Any

from tests.conftest import Zelador, free_port, wait_for


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def fetch_json(url: str) -> Any:
    """/api/status once its snapshot shows a refused reload (it is rebuilt once a second)."""
    data = json.loads(fetch(url))
    return data if data["config_identity"]["last_reload"] else None


def zelador(z: Zelador, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zelador", *args, "-c", str(z.config_path),
                           "--runtime-dir", str(z.tmp / "run")],
                          capture_output=True, text=True, timeout=60)


def test_reload_refused_by_a_broken_dropin_exits_78_with_the_error_and_the_old_config_stays(
        mfe, zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(mfe.config(monitor=False) + f"web: {{listen: '127.0.0.1:{port}'}}\n"
                        ).start()
    wait_for(lambda: z.program("comunicador")["state"] == "RUNNING", 10, "comunicador")
    first = z.status()["config_identity"]
    assert first["files"] == [str(z.config_path)]
    assert first["sha256"] == hashlib.sha256(
        f"{z.config_path}\0{len(z.config_path.read_bytes())}\0".encode()
        + z.config_path.read_bytes()).hexdigest()
    assert first["last_reload"] == {}
    dropins = z.tmp / "zelador.d"
    dropins.mkdir()
    broken = dropins / "50-site.yaml"
    broken.write_text(f"programs:\n  monitor:\n    match: {{name: {mfe.mon}}}\n"
                      f"    start: {mfe.script(mfe.mon)}\n    part_off: comunicador\n")
    done = zelador(z, "reload")
    assert done.returncode == 78, done
    assert done.stderr.strip() == (f"zelador: error: {broken}:5: programs.monitor.part_off: "
                                   "unknown key (did you mean 'part_of'?)")
    status = z.status()
    assert [p["name"] for p in status["programs"]] == ["comunicador"]  # the old config stays
    identity = status["config_identity"]
    assert identity["sha256"] == first["sha256"] and identity["files"] == first["files"]
    assert identity["last_reload"]["ok"] is False
    assert "part_off" in identity["last_reload"]["error"]
    text = zelador(z, "status").stdout
    assert f"config {first['sha256'][:12]}" in text and "last reload REFUSED" in text, text
    api = wait_for(lambda: fetch_json(f"http://127.0.0.1:{port}/api/status"), 10, "/api/status")
    assert api["config_identity"]["last_reload"]["ok"] is False  # (a snapshot a second old)
    metrics = fetch(f"http://127.0.0.1:{port}/metrics")
    assert f'zelador_config_info{{files="1",sha256="{first["sha256"]}"}} 1.0' in metrics, metrics
    assert "zelador_config_last_reload_success 0.0" in metrics
    stamp = float(metrics.split("\nzelador_config_last_reload_timestamp_seconds ")[1].split()[0])
    assert stamp == identity["last_reload"]["at"]

    broken.write_text(broken.read_text().replace("part_off", "part_of"))
    done = zelador(z, "reload")
    assert done.returncode == 0, done
    identity = z.status()["config_identity"]
    assert identity["files"] == [str(z.config_path), str(broken)]
    assert identity["sha256"] != first["sha256"]
    assert identity["last_reload"]["ok"] is True and identity["loaded_at"] > first["loaded_at"]
    wait_for(lambda: z.program("monitor")["state"] == "RUNNING", 10, "the drop-in's monitor")


def test_reload_without_a_daemon_says_so(tmp_path) -> None:
    config = tmp_path / "zelador.yaml"
    config.write_text("programs:\n  a: {match: {name: A}, start: /bin/true}\n")
    done = subprocess.run([sys.executable, "-m", "zelador", "reload", "-c", str(config),
                           "--runtime-dir", str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 69 and "zelador is not running" in done.stderr, done
