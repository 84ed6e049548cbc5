"""The operations guide's recipes that are files: the Prometheus config for a fleet (file_sd)
and the alert rules it loads, as promtool (Debian's prometheus package) judges them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).parents[2] / "docs" / "prometheus"


def test_the_fleet_scrape_config_and_its_rules_are_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (scripts/test.sh installs prometheus)")
    done = subprocess.run([promtool, "check", "config", "prometheus.yml"], capture_output=True,
                          text=True, cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr
    text = (PROMETHEUS / "prometheus.yml").read_text()
    assert "file_sd_configs" in text and "zelador-rules.yml" in text
    assert "zelador_config_last_reload_success" in (PROMETHEUS / "zelador-rules.yml").read_text()
