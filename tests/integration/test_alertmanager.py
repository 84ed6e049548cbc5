"""The alertmanager channel against a real Alertmanager (Debian's, loopback) that routes to a
webhook receiver of the test's: twenty terminals' "comunicador gave up" is one grouped
notification listing twenty instances, their recoveries resolve it; a real zelador's alert
survives an Alertmanager that is down for 30 s (the outbox retries it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alertservers import Receiver
from tests.amserver import ALERTMANAGER, AlertmanagerServer
from tests.conftest import Zelador, wait_for

pytestmark = pytest.mark.skipif(not ALERTMANAGER.exists(),
                                reason="Debian's prometheus-alertmanager is not installed")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: Receiver) -> Iterator[AlertmanagerServer]:
    server = AlertmanagerServer(tmp_path / "am", receiver.url).start()
    yield server
    server.stop()


def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [body for _, body in receiver.posts]


def item(host: str, phase: str, opened: float, closed: float | None = None) -> dict[str, Any]:
    return {"key": "program/comunicador/gave_up", "phase": phase, "subject_kind": "program",
            "subject": "comunicador", "problem": "gave_up", "opened": opened, "closed": closed,
            "at": closed or opened, "host": host,
            "message": "comunicador: gave up after 10 failed starts in 5m; retrying every 2m",
            "first": "comunicador: gave up"}


def test_twenty_terminals_are_one_grouped_notification(alertmanager: AlertmanagerServer,
                                                       receiver: Receiver) -> None:
    from zelador.alerts.channels.alertmanager import AlertmanagerSender
    from zelador.alerts.outbox import Batch
    from zelador.config.model import Alertmanager

    target = Alertmanager(url=alertmanager.url, labels=(("chain", "rede-x"),), resend=60.0)
    senders = [AlertmanagerSender(target, f"pos-{i:02d}") for i in range(20)]
    # Fresh incidents: Alertmanager flushes at once an alert that began longer than its
    # group_wait ago (docs/alerts.md: its group_wait must exceed zelador's alerts.group_wait)
    opened = time.time()
    try:
        for sender in senders:
            outcome = sender.send(Batch("am", [item(sender.host, "problem", opened)]))
            assert outcome.ok, outcome.error
        wait_for(lambda: notifications(receiver), 30, "Alertmanager's notification")
        first = notifications(receiver)[0]
        assert first["status"] == "firing"
        assert first["groupLabels"] == {"alertname": "gave_up", "program": "comunicador"}
        assert sorted(a["labels"]["instance"] for a in first["alerts"]) == \
            [f"pos-{i:02d}" for i in range(20)]
        one = first["alerts"][0]
        assert one["labels"]["chain"] == "rede-x"
        assert one["annotations"]["summary"] == "comunicador gave up"
        assert one["annotations"]["journal"].startswith(
            "journalctl -u zelador ZELADOR_PROGRAM=comunicador")
        closed = time.time()
        for sender in senders:
            assert sender.send(Batch("am", [item(sender.host, "recovery", opened, closed)])).ok
        wait_for(lambda: any(n["status"] == "resolved" for n in notifications(receiver)), 30,
                 "the resolved notification")
        resolved = next(n for n in notifications(receiver) if n["status"] == "resolved")
        assert len(resolved["alerts"]) == 20
        assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
    finally:
        for sender in senders:
            sender.close()


def test_a_firing_alert_is_resent_and_a_restart_resends_what_is_open(
        alertmanager: AlertmanagerServer) -> None:
    """Alertmanager resolves an alert whose endsAt passes: zelador posts each open incident
    again every `resend`, also after a restart (restore), with endsAt 4 resends ahead."""
    from zelador.alerts.channels.alertmanager import AlertmanagerSender
    from zelador.alerts.outbox import Batch
    from zelador.config.model import Alertmanager

    def firing() -> list[dict[str, Any]]:
        with urllib_open(f"{alertmanager.url}/api/v2/alerts?active=true") as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    target = Alertmanager(url=alertmanager.url, resend=1.0)
    sender = AlertmanagerSender(target, "pos-01")
    try:
        assert sender.send(Batch("am", [item("pos-01", "problem", time.time())])).ok
        (alert,) = firing()
        first_end = alert["endsAt"]
        wait_for(lambda: firing()[0]["endsAt"] != first_end, 10, "a resend moved endsAt on")
    finally:
        sender.close()
    restarted = AlertmanagerSender(target, "pos-01")
    try:
        before = firing()[0]["endsAt"]
        restarted.restore([item("pos-01", "problem", time.time())])
        wait_for(lambda: firing()[0]["endsAt"] != before, 10, "resent after the restart")
    finally:
        restarted.close()


def urllib_open(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def test_an_alertmanager_down_for_30s_loses_nothing(tmp_path: Path, alertmanager: AlertmanagerServer,
                                                    receiver: Receiver) -> None:
    config = f"""jobs:
  backup: {{every: 1h}}
intake: {{listen: off}}
alerts:
  group_wait: 0s
  host: pos-07
  channels:
    am: {{alertmanager: {{url: "{alertmanager.url}", labels: {{store: loja-12}}, timeout: 2s}}}}
"""
    zel = Zelador(tmp_path / "z", config)
    (tmp_path / "z").mkdir()
    try:
        zel.start()
        alertmanager.stop()
        subprocess.run([sys.executable, "-m", "zelador", "report", "backup", "fail", "-m",
                        "disk full", "--socket", zel.socket], check=True, capture_output=True,
                       timeout=30)
        zel.wait_event("alert_failed", timeout=30)
        time.sleep(30)  # the outage the issue asks for
        alertmanager.start()
        wait_for(lambda: notifications(receiver), 90, "the alert after the outage")
        (alert,) = notifications(receiver)[0]["alerts"]
        assert alert["labels"]["alertname"] == "failed"
        assert alert["labels"]["job"] == "backup"
        assert alert["labels"]["instance"] == "pos-07"
        assert alert["labels"]["store"] == "loja-12"
        assert "disk full" in alert["annotations"]["description"]
        zel.wait_event("alert_sent", timeout=30)
    finally:
        zel.stop()


def test_the_shipped_alertmanager_example_is_valid() -> None:
    """docs/prometheus/alertmanager.yml, checked by Debian's amtool."""
    import shutil

    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool (prometheus-alertmanager) is not installed")
    example = Path(__file__).parents[2] / "docs" / "prometheus" / "alertmanager.yml"
    done = subprocess.run([amtool, "check-config", str(example)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
