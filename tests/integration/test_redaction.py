"""Secrets never leave a channel (issue 20): a Bot API that echoes the URL it was asked, with the
token percent-encoded in it, is said as `<secret>` in the journal, the history and alerts.db."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.alertservers import FakeTelegram
from tests.conftest import Zelador
from zelador.alerts.channels.common import public_url, redact

TOKEN = "7312345678:AAHk-Secret_Token0123456789abcdefXYZ"


def forms(secret: str) -> list[str]:
    quoted = urllib.parse.quote(secret, safe="")
    return [secret, quoted, quoted.lower(), urllib.parse.quote(quoted, safe=""),
            secret.split(":")[1]]


@pytest.mark.parametrize("shown", [
    TOKEN, urllib.parse.quote(TOKEN, safe=""), urllib.parse.quote(TOKEN, safe="").lower(),
    urllib.parse.quote(urllib.parse.quote(TOKEN, safe=""), safe=""),
    TOKEN.replace(":", "\\u003a"), TOKEN.replace(":", "&#58;"),
    f"https://api.telegram.org/bot{urllib.parse.quote(TOKEN)}/sendMessage"])
def test_redact_finds_the_secret_in_every_form(shown: str) -> None:
    out = redact(f"HTTP 400: {shown} (see docs)", [TOKEN])
    assert "<secret>" in out and not any(f in out for f in forms(TOKEN))


def test_public_url_keeps_only_the_server() -> None:
    assert public_url("https://u:pw@hooks.example.com:8443/services/T0/B0/KEY?k=v") == \
        "https://hooks.example.com:8443/..."


def test_an_echoed_token_is_in_no_journal_line_history_row_or_alerts_row(tmp_path: Path) -> None:
    bot = FakeTelegram(TOKEN, echo=True)
    token = tmp_path / "telegram.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    config = f"""jobs:
  backup: {{every: 1h}}
intake: {{listen: off}}
alerts:
  group_wait: 0s
  channels:
    phone: {{telegram: {{token_file: {token}, chat_id: "-100123", api_url: "{bot.url}"}}}}
"""
    zel = Zelador(tmp_path, config).start()
    try:
        subprocess.run([sys.executable, "-m", "zelador", "report", "backup", "fail", "--socket",
                        zel.socket], check=True, capture_output=True, timeout=30)
        failed = zel.wait_event("alert_failed", timeout=20)
        assert "<secret>" in failed["message"]  # the echo came back, cleaned
        assert bot.calls and bot.url in failed["message"]
    finally:
        zel.stop()
        bot.close()
    state = tmp_path / "state"
    texts = [zel.log.read_text()]
    with sqlite3.connect(state / "history.db") as conn:
        texts += [f"{m} {f}" for m, f in conn.execute("SELECT message, fields FROM events")]
    with sqlite3.connect(state / "alerts.db") as conn:
        texts += [f"{e} {i}" for e, i in conn.execute("SELECT last_error, item FROM outbox")]
    assert any("<secret>" in t for t in texts[1:])
    for text in texts:
        for form in forms(TOKEN):
            assert form.lower() not in text.lower(), (form, text)
