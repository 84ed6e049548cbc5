"""`zelador units`: the shipped unit files are the renderer's output, golden files hold the rest,
and systemd itself (`systemd-analyze verify`) finds nothing wrong with any rendered file."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from zelador.cli import main
from zelador.config.model import DEFAULT_PATH
from zelador.config.reader import load_config
from zelador.systemd.units import DEFAULT_EXE, quote, render_units, span

HERE = pathlib.Path(__file__).parent
REPO = HERE.parent.parent
GOLDEN = HERE / "golden"
CUSTOM = "/srv/terminal/zelador.yaml"  # where custom.yaml claims to live, in ExecStart=
UPDATE = os.environ.get("ZELADOR_UPDATE_GOLDEN") == "1"  # rewrite the files instead of comparing


def compare(rendered: dict[str, str], folder: pathlib.Path) -> None:
    for name, text in rendered.items():
        if UPDATE:
            (folder / name).write_text(text)
        assert (folder / name).read_text() == text, f"{folder / name} differs from the renderer"


def test_shipped_units_are_rendered_from_the_shipped_config():
    config = load_config(str(REPO / "config" / "zelador.yaml"), check_files=False)
    rendered = render_units(config, DEFAULT_PATH, DEFAULT_EXE)
    assert sorted(rendered) == ["zelador-check.service", "zelador-check.timer", "zelador.service"]
    compare(rendered, REPO / "units")


def test_custom_config_path_check_cadence_and_job_timers_match_golden_files():
    config = load_config(str(GOLDEN / "custom.yaml"), check_files=False)
    rendered = render_units(config, CUSTOM, DEFAULT_EXE)
    assert sorted(rendered) == [
        "zelador-check.service", "zelador-check.timer", "zelador-job-fechamento.service",
        "zelador-job-fechamento.timer", "zelador-job-sync.service", "zelador-job-sync.timer",
        "zelador.service"]  # report-only has no run: no timer
    timer = rendered["zelador-job-fechamento.timer"]
    assert "OnCalendar=Mon..Sat *-*-* 23:30:00 America/Fortaleza" in timer
    service = rendered["zelador-job-fechamento.service"]
    assert ("ExecStart=/usr/bin/zelador exec fechamento --config /srv/terminal/zelador.yaml "
            '--user daemon -- /bin/sh -c "echo \\"100%% done\\" for $$USER"') in service
    assert "TimeoutStartSec=930s" in service
    assert "OnUnitActiveSec=120min" in rendered["zelador-job-sync.timer"]
    assert "ExecStart=/usr/bin/zelador run --config /srv/terminal/zelador.yaml" in rendered[
        "zelador.service"]
    assert "TimeoutStartSec=150s" in rendered["zelador-check.service"]
    assert "OnUnitActiveSec=5min" in rendered["zelador-check.timer"]
    compare(rendered, GOLDEN)


def test_check_timeout_defaults_to_longest_start_timeout_plus_30s():
    config = load_config(str(REPO / "config" / "zelador.yaml"), check_files=False)
    assert config.check_timeout == 30.0 + 30.0
    assert "TimeoutStartSec=1min\n" in render_units(config)["zelador-check.service"]


@pytest.mark.parametrize(("arg", "line"), [
    ("/usr/bin/zelador", "/usr/bin/zelador"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("100%", "100%%"),
    ("$HOME", '"$$HOME"'),
    ("a\\b", '"a\\\\b"'),
    (";", '";"'),
])
def test_exec_arguments_are_quoted_for_systemd(arg, line):
    assert quote(arg) == line


@pytest.mark.parametrize(("seconds", "text"), [(1, "1s"), (60, "1min"), (90, "90s"),
                                               (0.5, "500ms"), (1.25, "1250ms"), (3600, "60min")])
def test_spans_are_exact(seconds, text):
    assert span(seconds) == text


def test_units_command_writes_files_that_systemd_analyze_verify_accepts(tmp_path, capsys):
    """Rendered with this checkout's zelador as ExecStart (verify insists the binary exists)."""
    exe = shutil.which("zelador") or os.path.join(os.path.dirname(sys.executable), "zelador")
    out = tmp_path / "units"
    assert main(["units", "-c", str(GOLDEN / "custom.yaml"), "--output", str(out),
                 "--exe", exe]) == 0
    assert f"wrote {out}/zelador.service" in capsys.readouterr().out
    assert (out / "zelador.service").stat().st_mode & 0o777 == 0o644
    files = sorted(str(p) for p in out.iterdir())
    assert len(files) == 7
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *files],
                          capture_output=True, text=True, cwd=out)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_systemd_analyze_verify_is_not_a_rubber_stamp(tmp_path):
    bad = tmp_path / "zelador-bad.service"
    bad.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\nTimeoutStartSec=soon\n")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)],
                          capture_output=True, text=True)
    assert "TimeoutStartSec" in done.stderr


def test_units_command_prints_every_file_without_output(capsys):
    assert main(["units", "-c", str(REPO / "config" / "zelador.yaml")]) == 0
    out = capsys.readouterr().out
    for name in ("zelador.service", "zelador-check.service", "zelador-check.timer"):
        assert f"# ---- {name} ----" in out
    assert f"ExecStart=/usr/bin/zelador run --config {REPO}/config/zelador.yaml" in out


def test_the_cli_names_the_same_default_exe_and_config():
    import importlib

    assert importlib.import_module("zelador.cli.main").DEFAULT_EXE == DEFAULT_EXE
    assert importlib.import_module("zelador.cli.main").DEFAULT_PATH == DEFAULT_PATH


def test_the_cli_starts_without_the_config_model_yaml_sqlite_or_psutil():
    """`zelador report`, `names` (on every Tab) and `--version` import only what they need."""
    import subprocess
    import sys

    probe = ("import sys, zelador.cli.main; print(' '.join(sorted(m for m in sys.modules if m in "
             "('zelador.config.model', 'yaml', 'sqlite3', 'psutil', 'zelador.store.history'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""
