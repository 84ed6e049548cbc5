"""What the channels share: the JSON document, reading a secret, HTTP with a hard timeout, and
removing secrets from whatever a channel says."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

from zelador import __version__
from zelador.alerts.outbox import Batch
from zelador.alerts.texts import Item, headline, journal_line
from zelador.config.host import read_checked
from zelador.errors import UnsafeFileError

BODY_CAP = 64 * 1024  # bytes of a server's answer read


def document(batch: Batch, host: str) -> dict[str, Any]:
    """The JSON a webhook receives and a command reads on stdin (docs/alerts.md, version 1)."""
    return {"version": 1, "source": "zelador", "zelador_version": __version__, "host": host,
            "channel": batch.channel, "sent_at": round(time.time(), 3),
            "alerts": [public(item) for item in batch.items]}


def public(item: Item) -> dict[str, Any]:
    return {"incident": item.get("key"), "phase": item["phase"],
            "subject_kind": item.get("subject_kind"), "subject": item.get("subject"),
            "problem": item.get("problem"), "title": headline(item),
            "message": item.get("message"), "first_message": item.get("first"),
            "opened": item.get("opened"), "closed": item.get("closed"), "at": item.get("at"),
            "journal": journal_line(item) if item["phase"] != "test" else None}


def read_secret(path: str) -> str:
    """The secret's first line; OSError says which file (never what is in it)."""
    try:  # as root, from the file checked on its whole path, at every read
        data = read_checked(path, "secret file", secret=True)
    except UnsafeFileError as exc:
        raise OSError(str(exc)) from None
    value = data.decode("utf-8").split("\n", 1)[0].strip()
    if not value:
        raise OSError(f"{path} is empty")
    return value


def http(method: str, url: str, body: bytes | None, headers: dict[str, str],
         timeout: float) -> tuple[int, bytes]:
    """One request; returns (status, body) for any HTTP answer, raises OSError otherwise.

    The timeout bounds the connection and each read; the answer is cut at BODY_CAP."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return int(answer.status), answer.read(BODY_CAP)
    except urllib.error.HTTPError as exc:
        try:
            data = exc.read(BODY_CAP)
        except OSError:
            data = b""
        return int(exc.code), data
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise OSError(str(reason.strerror if isinstance(reason, OSError) and reason.strerror
                          else reason)) from None


def short(data: bytes, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


HIDDEN = "<secret>"
MIN_SECRET = 4  # shorter values are not looked for (they would blank ordinary words)


def _char(c: str) -> str:
    """A pattern for one character of a secret in any form a server may echo it in: as is,
    percent-encoded (%3A, %3a, or twice: %253A), JSON-escaped (\\u003a) or an HTML entity."""
    forms = [re.escape(c)]
    for byte in c.encode():
        hexa = f"{byte:02x}"
        forms += [f"%(?:25)?{hexa}", f"\\\\u00{hexa}", f"&#(?:x{hexa}|{byte});"]
    return "(?:" + "|".join(forms) + ")"


def secret_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching every secret in every form; None when there is none to hide."""
    wanted = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
    if not wanted:
        return None
    return re.compile("|".join("".join(_char(c) for c in s) for s in wanted), re.IGNORECASE)


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret replaced by <secret>, whatever form it took (see `_char`)."""
    pattern = secret_pattern(secrets)
    return text if pattern is None or not text else pattern.sub(HIDDEN, text)


def public_url(url: str) -> str:
    """A URL as it may be journaled: no user or password, no path, no query (a webhook's path
    and query often hold its key): scheme://host[:port]."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    more = "/..." if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{more}"
