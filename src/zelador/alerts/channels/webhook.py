"""POST the batch as one JSON document; any 2xx is delivered, anything else is tried again."""

from __future__ import annotations

import json
import socket

from zelador import __version__
from zelador.alerts.channels.common import document, http, short
from zelador.alerts.outbox import Batch, Outcome
from zelador.config.model import Webhook


class WebhookSender:
    def __init__(self, target: Webhook, host: str) -> None:
        self.target = target
        self.host = host

    def send(self, batch: Batch) -> Outcome:
        body = json.dumps(document(batch, self.host)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"zelador/{__version__}",
                   **dict(self.target.headers)}
        try:
            status, answer = http("POST", self.target.url, body, headers, self.target.timeout)
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error=f"{self.target.url}: {str(exc) or 'timed out'}")
        if 200 <= status < 300:
            return Outcome(True)
        retry = None
        if status == 429:
            retry = 60.0
        return Outcome(False, error=f"{self.target.url}: HTTP {status} {short(answer)}",
                       retry_after=retry)
