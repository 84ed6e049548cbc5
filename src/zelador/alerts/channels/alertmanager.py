"""Prometheus' Alertmanager as a channel: each open incident is an alert there.

Alertmanager groups, deduplicates, silences and inhibits alerts across the whole fleet and owns
the receivers (Telegram, e-mail, webhooks): when the fiscal service has a bad hour, 1,000
terminals' "comunicador gave up" become one grouped message, not 1,000 (docs/alerts.md).

An alert's labels name it (Alertmanager's identity of an alert is its label set):
    alertname  the problem (gave_up, start_failed, failed, timeout, check_failed, ...)
    instance   this terminal (alerts.host, default the host name)
    program | job | check   the subject
    + the channel's `labels:` (chain, store, ...)
Annotations: summary (the headline), description (what zelador saw and did), journal (the
journalctl line to read on the terminal).

Timing, as Prometheus itself does it: a firing alert carries `endsAt` = now + 4 x `resend`, and
every open incident this channel delivered is posted again every `resend` (a thread of this
sender), so Alertmanager keeps it firing while it is open and resolves it by itself within four
resends of this terminal going silent; a recovery posts `endsAt` = the moment it recovered. The
first post of a problem and its recovery go through the durable outbox like every channel's
messages (retried, never lost); the resends are best effort (the next one comes anyway).
API: POST /api/v2/alerts, a JSON list of {labels, annotations, startsAt, endsAt}; 200 = taken.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from typing import Any

from zelador import __version__
from zelador.alerts.channels.common import http, redact, short
from zelador.alerts.outbox import Batch, Outcome
from zelador.alerts.texts import Item, detail, headline, journal_line
from zelador.config.model import Alertmanager

ENDS_AFTER = 4  # resends: a firing alert's endsAt is this many resend intervals ahead
FIRING = ("problem", "reminder")


def rfc3339(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def alert(item: Item, target: Alertmanager, host: str, now: float) -> dict[str, Any]:
    """One item as an Alertmanager alert (the JSON /api/v2/alerts takes)."""
    phase = item["phase"]
    if phase == "test":
        labels = {"alertname": "zelador_test", "instance": host}
        return {"labels": {**dict(target.labels), **labels},
                "annotations": {"summary": headline(item), "description": item["message"]},
                "startsAt": rfc3339(now), "endsAt": rfc3339(now + 60.0)}
    labels = {"alertname": item["problem"], "instance": host,
              item.get("subject_kind") or "program": item["subject"]}
    firing = phase in FIRING
    ends = now + ENDS_AFTER * target.resend if firing else float(item.get("closed") or now)
    problem = {**item, "phase": "problem"} if not firing and phase != "episode" else item
    return {"labels": {**dict(target.labels), **labels},
            "annotations": {"summary": headline(problem),
                            "description": " ".join(detail(problem)[:-1]),
                            "journal": journal_line(item)},
            "startsAt": rfc3339(float(item.get("opened") or now)), "endsAt": rfc3339(ends)}


class AlertmanagerSender:
    def __init__(self, target: Alertmanager, host: str) -> None:
        self.target = target
        self.host = host
        self.url = f"{target.url}/api/v2/alerts"
        self._firing: dict[str, Item] = {}  # incident key -> its problem item, delivered here
        self._lock = threading.Lock()  # the firing map
        # One post at a time: a resend that took its snapshot before a recovery must not reach
        # Alertmanager after it (it would fire the alert again until its endsAt).
        self._posting = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, batch: Batch) -> Outcome:
        with self._posting:
            with self._lock:  # a recovery stops the resends at once, whatever its outcome
                for item in batch.items:
                    if item.get("key") and item["phase"] not in FIRING:
                        self._firing.pop(item["key"], None)
            now = time.time()
            outcome = self._post([alert(item, self.target, self.host, now)
                                  for item in batch.items])
            if outcome.ok:
                with self._lock:
                    for item in batch.items:
                        if item.get("key") and item["phase"] in FIRING:
                            self._firing[item["key"]] = item
        if outcome.ok:
            self._ensure_thread()
        return outcome

    def restore(self, items: list[Item]) -> None:
        """The open incidents this channel had delivered before zelador restarted: they are
        resent from now on (and once at once), so Alertmanager does not resolve them."""
        with self._lock:
            for item in items:
                if item.get("key"):
                    self._firing[item["key"]] = item
        if items:
            self._ensure_thread(at_once=True)

    def close(self) -> None:
        self._stop.set()

    def _ensure_thread(self, at_once: bool = False) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._resend, args=(at_once,),
                                            name="alertmanager-resend", daemon=True)
            self._thread.start()

    def _resend(self, at_once: bool) -> None:
        if not at_once:
            self._stop.wait(self.target.resend)
        while not self._stop.is_set():
            with self._posting:
                with self._lock:
                    items = list(self._firing.values())
                if items:
                    now = time.time()
                    self._post([alert(item, self.target, self.host, now) for item in items])
            self._stop.wait(self.target.resend)

    def clean(self, text: str) -> str:
        """`text` without the password of a URL that has one, in any form (the lane cleans
        every outcome with it)."""
        return redact(text, [urllib.parse.urlsplit(self.target.url).password or ""])

    def _post(self, alerts: list[dict[str, Any]]) -> Outcome:
        body = json.dumps(alerts).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"zelador/{__version__}"}
        try:
            status, answer = http("POST", self.url, body, headers, self.target.timeout)
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error=f"{self.url}: {str(exc) or 'timed out'}")
        if 200 <= status < 300:
            return Outcome(True)
        return Outcome(False, error=f"{self.url}: HTTP {status} {short(answer)}",
                       retry_after=60.0 if status == 429 else None)
