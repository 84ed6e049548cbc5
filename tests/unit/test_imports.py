"""A daemon pays only for what its config uses: with programs alone, none of the alert channels'
HTTP/e-mail/TLS stack, croniter or zoneinfo, the check probes' HTTP client, the web server,
prometheus_client or kazoo is imported (each comes with its section, also on a reload)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

HEAVY = ("ssl", "http.client", "http.server", "email", "smtplib", "urllib.request", "croniter",
         "dateutil", "zoneinfo", "prometheus_client", "kazoo", "zelador.web.server",
         "zelador.fleet.zookeeper", "zelador.alerts.channels.email",
         "zelador.alerts.channels.webhook", "zelador.alerts.channels.telegram")

PROBE = """
import sys
from zelador.config.reader import parse_config
from zelador.programs.launcher import Launcher
from zelador.runtime.daemon import Daemon
from zelador.systemd.journal import StderrJournal
config = parse_config(open(sys.argv[1]).read(), sys.argv[1], check_files=False)
Daemon(config, journal=StderrJournal(), launcher=Launcher(), proc_events=False, subreaper=False,
       history_file=sys.argv[2] + "/history.db", alerts_file=sys.argv[2] + "/alerts.db")
heavy = sys.argv[3].split()
print(" ".join(sorted(m for m in sys.modules if m in heavy)))
"""

PROGRAMS = """interval: 10s
programs:
  comunicador:
    match: {name: Comunicador}
    start: /opt/sefaz/cco/bin/runcco-ser.sh
    restart: {delay: 0s, max_delay: 1m, burst: 10 in 5m}
  monitor:
    match: {name: Monitor}
    start: /opt/sefaz/cco/bin/runcco-mon.sh
    part_of: comunicador
"""


def imported(tmp_path: Path, text: str) -> set[str]:
    config = tmp_path / "zelador.yaml"
    config.write_text(text)
    done = subprocess.run([sys.executable, "-c", PROBE, str(config), str(tmp_path),
                           " ".join(HEAVY)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_a_programs_only_daemon_imports_none_of_the_optional_stacks(tmp_path):
    assert imported(tmp_path, PROGRAMS) == set()


def test_the_sections_bring_their_libraries(tmp_path):
    """The other side: the probe does see an import when the config asks for it."""
    text = PROGRAMS + ("jobs:\n  backup: {schedule: '0 3 * * *'}\n"
                       f"web: {{listen: '127.0.0.1:{free_port()}'}}\n")
    got = imported(tmp_path, text)
    assert {"croniter", "zoneinfo", "zelador.web.server"} <= got


def test_the_report_worker_imports_only_the_parser():
    """The intake's worker process (13 MB, most of it the interpreter): none of zelador but the
    parser, and no YAML, psutil, SQLite, argparse or subprocess."""
    probe = ("import sys, zelador.jobs.intakeworker; print(' '.join(sorted(m for m in "
             "sys.modules if m.startswith('zelador.') or m in ('yaml', 'psutil', 'sqlite3', "
             "'subprocess', 'argparse'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert all(m == "zelador.jobs" or m.startswith("zelador.jobs.intake")
               for m in done.stdout.split()), done.stdout
