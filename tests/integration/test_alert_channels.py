"""Each channel against a real server on loopback, driven directly (no daemon): the Bot API's
error shapes, SMTP with STARTTLS and a throwaway certificate, escaping, secrets kept out."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.alertservers import FakeTelegram, Receiver, Smtp
from zelador.alerts.channels.command import CommandSender
from zelador.alerts.channels.email import EmailSender
from zelador.alerts.channels.telegram import LIMIT, TelegramSender
from zelador.alerts.channels.webhook import WebhookSender
from zelador.alerts.outbox import Batch, Previous
from zelador.config.model import Command, Email, Telegram, Webhook


def item(subject: str = "comunicador", phase: str = "problem", problem: str = "gave_up",
         message: str = "", closed: float | None = None) -> dict[str, Any]:
    now = time.time()
    return {"key": f"program/{subject}/{problem}", "phase": phase, "subject_kind": "program",
            "subject": subject, "problem": problem, "opened": now - 60, "closed": closed,
            "at": now, "message": message or f"{subject}: giving up for 2m", "first": "",
            "host": "pos-1"}


@pytest.fixture
def bot(tmp_path: Path):
    server = FakeTelegram("123:SECRET")
    server.token_file = tmp_path / "token"  # type: ignore[attr-defined]
    server.token_file.write_text("123:SECRET\n")  # type: ignore[attr-defined]
    server.token_file.chmod(0o600)  # type: ignore[attr-defined]  # a secret: read by root alone
    yield server
    server.close()


def telegram(bot: FakeTelegram, on_recovery: str = "delete") -> TelegramSender:
    return TelegramSender(Telegram(str(bot.token_file), "-100123", on_recovery,  # type: ignore[attr-defined]
                                   timeout=5.0, api_url=bot.url), "pos-1")


def test_telegram_problem_then_recovery_deletes_the_message(bot: FakeTelegram) -> None:
    sender = telegram(bot)
    sent = sender.send(Batch("phone", [item()]))
    assert sent.ok and sent.ref == f"-100123:{next(iter(bot.messages))}"
    back = item(phase="recovery", closed=time.time())
    done = sender.send(Batch("phone", [back], [Previous(sent.ref, time.time(),
                                                         [dict(item(), closed=time.time())])]))
    assert done.ok and bot.messages == {} and len(bot.deleted) == 1
    assert [m for m, _ in bot.calls] == ["sendMessage", "deleteMessage"]  # no new message


def test_telegram_a_message_too_old_to_delete_is_edited(bot: FakeTelegram) -> None:
    sender = telegram(bot)
    sent = sender.send(Batch("phone", [item()]))
    assert sent.ref is not None
    old = time.time() - 49 * 3600
    done = sender.send(Batch("phone", [item(phase="recovery", closed=time.time())],
                             [Previous(sent.ref, old, [dict(item(), closed=time.time())])]))
    assert done.ok and "deleteMessage" not in [m for m, _ in bot.calls]
    (message,) = bot.messages.values()
    assert "recovered at" in message.text and "<s>" in message.text


def test_telegram_cant_be_deleted_falls_back_to_edit(bot: FakeTelegram) -> None:
    bot.undeletable = True
    sender = telegram(bot)
    sent = sender.send(Batch("phone", [item()]))
    assert sent.ref is not None
    done = sender.send(Batch("phone", [item(phase="recovery", closed=time.time())],
                             [Previous(sent.ref, time.time(), [dict(item(), closed=1.0)])]))
    assert done.ok and "edited" in done.note
    assert next(iter(bot.messages.values())).edits == 1
    again = sender.send(Batch("phone", [item(phase="recovery", closed=time.time())],
                              [Previous(sent.ref, time.time(), [dict(item(), closed=1.0)])]))
    assert again.ok  # 400 "message is not modified" is success


def test_telegram_partial_recovery_edits_until_the_last_one(bot: FakeTelegram) -> None:
    sender = telegram(bot)
    both = [item("comunicador"), item("monitor")]
    sent = sender.send(Batch("phone", both))
    assert sent.ref is not None
    one_back = [dict(both[0], closed=time.time()), both[1]]
    sender.send(Batch("phone", [item(phase="recovery", closed=time.time())],
                      [Previous(sent.ref, time.time(), one_back)]))
    (message,) = bot.messages.values()
    assert "<s>comunicador" in message.text and "monitor gave up" in message.text
    all_back = [dict(i, closed=time.time()) for i in both]
    sender.send(Batch("phone", [item("monitor", phase="recovery", closed=time.time())],
                      [Previous(sent.ref, time.time(), all_back)]))
    assert bot.messages == {}


def test_telegram_on_recovery_send_leaves_the_problem_and_sends_anew(bot: FakeTelegram) -> None:
    sender = telegram(bot, "send")
    sent = sender.send(Batch("phone", [item()]))
    assert sent.ref is not None
    sender.send(Batch("phone", [item(phase="recovery", closed=time.time())],
                      [Previous(sent.ref, time.time(), [dict(item(), closed=1.0)])]))
    assert len(bot.messages) == 2 and "is back" in list(bot.messages.values())[1].text


def test_telegram_429_gives_retry_after_and_no_token(bot: FakeTelegram) -> None:
    bot.throttle = 1
    outcome = telegram(bot).send(Batch("phone", [item()]))
    assert not outcome.ok and outcome.retry_after == 1
    assert "Too Many Requests" in outcome.error and "SECRET" not in outcome.error


def test_telegram_follows_migrate_to_chat_id(bot: FakeTelegram) -> None:
    bot.migrate_from = "-100123"
    sender = telegram(bot)
    outcome = sender.send(Batch("phone", [item()]))
    assert outcome.ok and outcome.ref is not None and outcome.ref.startswith("-1009999:")
    assert "update chat_id" in outcome.note
    assert sender.send(Batch("phone", [item("monitor")])).ok  # straight to the new chat


def test_telegram_escapes_html_and_cuts_to_the_limit(bot: FakeTelegram) -> None:
    nasty = item(message="comunicador: <b>bold</b> & <script>" + "x" * 9000)
    many = [dict(nasty, subject=f"p{i}") for i in range(20)]
    outcome = telegram(bot).send(Batch("phone", many))
    assert outcome.ok
    (message,) = bot.messages.values()
    assert len(message.text) <= LIMIT
    assert "&lt;script&gt;" in message.text and "<script>" not in message.text


def test_telegram_unreachable_and_wrong_token_say_why(bot: FakeTelegram, tmp_path: Path) -> None:
    bot.token_file.write_text("999:WRONG\n")  # type: ignore[attr-defined]
    outcome = telegram(bot).send(Batch("phone", [item()]))
    assert not outcome.ok and "401" in outcome.error and "WRONG" not in outcome.error
    missing = TelegramSender(Telegram(str(tmp_path / "none"), "-1"), "pos-1")
    assert "cannot read the token file" in missing.send(Batch("p", [item()])).error


def test_webhook_that_accepts_and_never_answers_costs_its_timeout(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        started = time.monotonic()
        outcome = WebhookSender(Webhook(url, timeout=0.5), "pos-1").send(Batch("h", [item()]))
        assert not outcome.ok and time.monotonic() - started < 5
        assert "timed out" in outcome.error


def test_webhook_500_and_garbage_are_failures(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        receiver.mode = "fail"
        outcome = WebhookSender(Webhook(receiver.url), "pos-1").send(Batch("h", [item()]))
        assert not outcome.ok and "HTTP 500 broken" in outcome.error
    finally:
        receiver.close()


def mail(smtp: Smtp, tmp_path: Path, **kw: Any) -> EmailSender:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    settings: dict[str, Any] = {"host": "127.0.0.1", "sender": "pos@example.net",
                                "to": ("ops@example.net",), "port": smtp.port, "user": "pos",
                                "password_file": str(password), "ca_file": str(smtp.cert),
                                "timeout": 5.0}
    return EmailSender(Email(**{**settings, **kw}), "pos-1")


def test_email_over_starttls_with_no_header_injection(tmp_path: Path) -> None:
    smtp = Smtp(tmp_path).start()
    try:
        evil = item(subject="x\r\nBcc: victim@example.net", message="Bcc: a\r\n\r\nbody")
        outcome = mail(smtp, tmp_path).send(Batch("mail", [evil]))
        assert outcome.ok and outcome.ref and outcome.ref.startswith("<")
        (_, message), = smtp.received
        assert message["Bcc"] is None and "\n" not in message["Subject"]
        assert message["Auto-Submitted"] == "auto-generated"
    finally:
        smtp.stop()


def test_email_refuses_a_certificate_it_cannot_verify(tmp_path: Path) -> None:
    smtp = Smtp(tmp_path).start()
    try:
        outcome = mail(smtp, tmp_path, ca_file=None).send(Batch("mail", [item()]))
        assert not outcome.ok and "CERTIFICATE_VERIFY_FAILED" in outcome.error
        assert smtp.received == []
    finally:
        smtp.stop()


def test_email_wrong_password_is_the_servers_answer(tmp_path: Path) -> None:
    smtp = Smtp(tmp_path).start()
    try:
        sender = mail(smtp, tmp_path)
        Path(sender.target.password_file or "").write_text("wrong\n")
        outcome = sender.send(Batch("mail", [item()]))
        assert not outcome.ok and "SMTP 535" in outcome.error and "wrong" not in outcome.error
    finally:
        smtp.stop()


def test_email_server_that_never_greets_costs_its_timeout(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        stop = threading.Event()
        sender = EmailSender(Email("127.0.0.1", "pos@example.net", ("ops@example.net",),
                                   port=port, timeout=0.5), "pos-1")
        outcome = sender.send(Batch("mail", [item()]))
        stop.set()
        assert not outcome.ok and "timed out" in outcome.error


def one_shot_server(answer: bytes) -> tuple[socket.socket, str]:
    """Accepts one connection, reads the request, answers `answer` raw (b"" : resets)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            if answer:
                conn.sendall(answer)
            else:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_telegram_garbage_and_resets_are_failed_attempts(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("1:X\n")
    token.chmod(0o600)
    for answer, expected in ((b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>",
                              "not a Bot API answer"), (b"", "")):
        listener, url = one_shot_server(answer)
        with listener:
            sender = TelegramSender(Telegram(str(token), "-1", api_url=url, timeout=5.0), "h")
            outcome = sender.send(Batch("phone", [item()]))
        assert not outcome.ok and expected in outcome.error and "1:X" not in outcome.error


@pytest.mark.skipif(os.geteuid() != 0, reason="the check is for a root daemon")
def test_a_command_others_can_modify_is_refused_at_every_run(tmp_path: Path) -> None:
    out = tmp_path / "ran"
    script = tmp_path / "alert.sh"
    script.write_text(f"#!/bin/sh\ntouch {out}\n")
    script.chmod(0o755)
    sender = CommandSender(Command((str(script),), timeout=5.0), "pos-1")
    assert sender.send(Batch("cmd", [item()])).ok and out.exists()
    out.unlink()
    script.chmod(0o777)  # changed after the config was read
    outcome = sender.send(Batch("cmd", [item()]))
    assert not outcome.ok and "writable by others" in outcome.error and not out.exists()


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    script = tmp_path / "slow.sh"
    script.write_text("#!/bin/sh\nsleep 300 &\nsleep 300\n")
    script.chmod(0o755)
    outcome = CommandSender(Command((str(script),), timeout=0.5), "pos-1").send(
        Batch("cmd", [item()]))
    assert not outcome.ok and "past its timeout" in outcome.error
