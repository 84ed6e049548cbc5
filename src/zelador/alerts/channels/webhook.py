"""POST the batch as one JSON document; any 2xx is delivered, anything else is tried again.

What it says names the server as scheme://host:port only (a webhook's path and query often hold
its key), and removes the header values and the URL's password, path and query in any form."""

from __future__ import annotations

import json
import socket
import urllib.parse

from zelador import __version__
from zelador.alerts.channels.common import document, http, public_url, redact, short
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
        where = public_url(self.target.url)
        try:
            status, answer = http("POST", self.target.url, body, headers, self.target.timeout)
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error=self.clean(f"{where}: {str(exc) or 'timed out'}"))
        if 200 <= status < 300:
            return Outcome(True)
        retry = None
        if status == 429:
            retry = 60.0
        return Outcome(False, error=self.clean(f"{where}: HTTP {status} {short(answer)}"),
                       retry_after=retry)

    def clean(self, text: str) -> str:
        """`text` without the header values and the URL's secret parts, in any form."""
        parts = urllib.parse.urlsplit(self.target.url)
        secrets = [value for _, value in self.target.headers]
        secrets += [word for _, value in self.target.headers for word in value.split()]
        secrets += [parts.password or "", parts.path.strip("/"), parts.query]
        secrets += [piece for piece in parts.path.split("/") if len(piece) >= 12]
        secrets += [value for _, value in urllib.parse.parse_qsl(parts.query)]
        return redact(text, secrets)
