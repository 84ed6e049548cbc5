"""Alerts end to end: the real daemon, real programs killed, and real servers on loopback (a
webhook receiver, a Bot API stand-in with Telegram's error shapes, aiosmtpd with STARTTLS).
Default settings unless the test is about one; `group_wait: 0s` where the issue's example has it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alertservers import FakeTelegram, Receiver, Smtp
from tests.conftest import Mfe, Zelador, pids_named, wait_for

ZELADOR = [sys.executable, "-m", "zelador"]
JOBS = """\
jobs:
  backup: {every: 1h}
  fechamento: {every: 1h}
  relatorio: {every: 1h}
intake: {listen: off}
"""


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def secret(tmp: Path, name: str, value: str) -> Path:
    path = tmp / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def report(zel: Zelador, job: str, verb: str, message: str = "") -> None:
    argv = [*ZELADOR, "report", job, verb, "--socket", zel.socket]
    if message:
        argv += ["-m", message]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def outbox(zel: Zelador) -> list[tuple[str, str, str]]:
    with sqlite3.connect(zel.tmp / "state" / "alerts.db") as conn:
        return conn.execute("SELECT channel, phase, state FROM outbox ORDER BY id").fetchall()


def hook_config(receiver: Receiver, extra: str = "", timeout: str = "5s") -> str:
    return f"""alerts:
  group_wait: 0s
  channels:
    hook: {{webhook: {{url: "{receiver.url}", timeout: {timeout}}}}}
{extra}"""


def test_job_failure_and_recovery_reach_the_webhook(tmp_path: Path, receiver: Receiver) -> None:
    zel = Zelador(tmp_path, JOBS + hook_config(receiver)).start()
    try:
        report(zel, "backup", "fail", "disk full")
        wait_for(lambda: len(receiver.alerts()) == 1, what="the problem posted")
        (problem,) = receiver.alerts()
        assert (problem["phase"], problem["subject"], problem["problem"]) == \
            ("problem", "backup", "failed")
        assert "disk full" in problem["message"]
        assert problem["journal"].startswith("journalctl -u zelador ZELADOR_JOB=backup")
        report(zel, "backup", "fail", "disk still full")  # the same incident: nothing new
        report(zel, "backup", "ok")
        wait_for(lambda: len(receiver.alerts()) == 2, what="the recovery posted")
        assert [a["phase"] for a in receiver.alerts()] == ["problem", "recovery"]
        sent = zel.wait_event("alert_sent", count=2)
        assert sent["channel"] == "hook"
        assert outbox(zel) == [("hook", "problem", "sent"), ("hook", "recovery", "sent")]
    finally:
        zel.stop()


def test_problems_within_group_wait_go_out_as_one_message(tmp_path: Path,
                                                           receiver: Receiver) -> None:
    config = JOBS + hook_config(receiver).replace("group_wait: 0s", "group_wait: 3s")
    zel = Zelador(tmp_path, config).start()
    try:
        for job in ("backup", "fechamento", "relatorio"):
            report(zel, job, "fail")
        wait_for(lambda: len(receiver.alerts()) == 3, what="three problems posted")
        assert len(receiver.posts) == 1
    finally:
        zel.stop()


def test_recovery_before_the_problem_was_sent_is_one_notice(tmp_path: Path,
                                                           receiver: Receiver) -> None:
    receiver.mode = "fail"
    zel = Zelador(tmp_path, JOBS + hook_config(receiver)).start()
    try:
        report(zel, "backup", "fail")
        zel.wait_event("alert_failed")
        report(zel, "backup", "ok")
        receiver.mode = "ok"
        wait_for(lambda: receiver.alerts(), timeout=30, what="the notice posted")
        wait_for(lambda: all(state not in ("pending", "sending") for _, _, state in outbox(zel)),
                 what="nothing left to send")
        assert [a["phase"] for a in receiver.alerts()] == ["episode"]
        assert outbox(zel) == [("hook", "problem", "superseded"), ("hook", "episode", "sent")]
    finally:
        zel.stop()


def test_kill_9_with_pending_alerts_they_go_out_after_restart(tmp_path: Path,
                                                             receiver: Receiver) -> None:
    receiver.mode = "fail"
    zel = Zelador(tmp_path, JOBS + hook_config(receiver)).start()
    try:
        report(zel, "backup", "fail")
        report(zel, "fechamento", "fail")
        zel.wait_event("alert_failed")
        assert zel.proc is not None
        zel.proc.kill()
        zel.proc.wait()
        receiver.mode = "ok"
        zel.start()
        wait_for(lambda: len(receiver.alerts()) == 2, timeout=30, what="both delivered")
        assert sorted(a["subject"] for a in receiver.alerts()) == ["backup", "fechamento"]
        report(zel, "backup", "ok")  # the incident survived the kill: its recovery is paired
        wait_for(lambda: len(receiver.alerts()) == 3, what="the recovery")
        assert receiver.alerts()[-1]["phase"] == "recovery"
    finally:
        zel.stop()


def test_mail_server_down_then_up_every_alert_delivered_once(tmp_path: Path) -> None:
    smtp = Smtp(tmp_path)  # not started yet: the port refuses
    password = secret(tmp_path, "smtp.password", "s3cret")
    config = JOBS + f"""alerts:
  group_wait: 0s
  channels:
    mail: {{email: {{host: 127.0.0.1, port: {smtp.port}, tls: starttls, user: pos,
                    password_file: {password}, ca_file: {smtp.cert},
                    from: pos@example.net, to: [ops@example.net]}}}}
"""
    zel = Zelador(tmp_path, config).start()
    try:
        for job in ("backup", "fechamento"):
            report(zel, job, "fail")
        failed = zel.wait_event("alert_failed")
        assert "s3cret" not in zel.log.read_text()
        assert failed["channel"] == "mail"
        report(zel, "relatorio", "fail")
        smtp.start()
        wait_for(lambda: all(s == "sent" for _, _, s in outbox(zel)) and len(outbox(zel)) == 3,
                 timeout=60, what="all three sent")
        subjects = [m["Subject"] for _, m in smtp.received]
        bodies = "".join(m.get_content() for _, m in smtp.received)
        for job in ("backup", "fechamento", "relatorio"):
            assert bodies.count(f"{job} failed") == 1, bodies
        assert all(s.startswith("[zelador] ") for s in subjects)
    finally:
        zel.stop()
        smtp.stop()


def test_a_hung_webhook_does_not_delay_a_restart(tmp_path: Path, mfe: Mfe,
                                                 receiver: Receiver) -> None:
    receiver.mode = "hang"
    config = mfe.config(defaults=True, monitor=False) + JOBS + hook_config(receiver, timeout="30s")
    zel = Zelador(tmp_path, config).start()
    try:
        zel.wait_event("started", "comunicador")
        report(zel, "backup", "fail")  # its attempt hangs for 30 s
        wait_for(lambda: outbox(zel) == [("hook", "problem", "sending")], what="attempt hangs")
        (pid,) = pids_named(mfe.com)
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("started", "comunicador", count=2, timeout=10)
        assert outbox(zel) == [("hook", "problem", "sending")]  # still hung meanwhile
    finally:
        zel.stop()


def test_comunicador_down_then_back_deletes_its_telegram_message(tmp_path: Path,
                                                                 mfe: Mfe) -> None:
    bot = FakeTelegram("123:ABC")
    token = secret(tmp_path, "telegram.token", bot.token)
    config = mfe.config(defaults=True, monitor=False) + f"""alerts:
  group_wait: 0s
  channels:
    phone: {{telegram: {{token_file: {token}, chat_id: "-100123", on_recovery: delete,
                        api_url: "{bot.url}"}}}}
"""
    zel = Zelador(tmp_path, config).start()
    script = mfe.script(mfe.com)
    try:
        zel.wait_event("started", "comunicador")
        script.rename(script.with_suffix(".moved"))  # mid-upgrade: the start script is gone
        (pid,) = pids_named(mfe.com)
        os.kill(pid, signal.SIGKILL)
        zel.wait_event("host_problem", "comunicador")
        wait_for(lambda: len(bot.messages) == 1, what="the message in the chat")
        (message,) = bot.messages.values()
        assert "comunicador cannot start" in message.text
        assert message.chat_id == "-100123"
        script.with_suffix(".moved").rename(script)
        zel.wait_event("started", "comunicador", count=2, timeout=20)
        wait_for(lambda: bot.deleted, what="the message deleted")
        assert bot.messages == {}
        assert "123:ABC" not in zel.log.read_text()
    finally:
        zel.stop()
        bot.close()


def test_flapping_is_detected_though_every_restart_works(tmp_path: Path, mfe: Mfe,
                                                         receiver: Receiver) -> None:
    config = mfe.config(defaults=True, monitor=False) + hook_config(
        receiver, extra="  flapping: 3 in 10m\n")
    zel = Zelador(tmp_path, config).start()
    try:
        for count in (1, 2, 3):
            zel.wait_event("started", "comunicador", count=count, timeout=20)
            (pid,) = wait_for(lambda: pids_named(mfe.com) or None, what="running")
            os.kill(pid, signal.SIGKILL)
            zel.wait_event("exited", "comunicador", count=count)
        wait_for(lambda: any(a["problem"] == "flapping" for a in receiver.alerts()),
                 timeout=20, what="flapping alerted")
        flapping = [a for a in receiver.alerts() if a["problem"] == "flapping"]
        assert len(flapping) == 1 and "exited 3 times" in flapping[0]["message"]
    finally:
        zel.stop()


def test_command_channel_gets_json_and_environment(tmp_path: Path) -> None:
    out = tmp_path / "got"
    script = tmp_path / "alert.sh"
    script.write_text(f"#!/bin/sh\ncat > {out}.json\nenv | grep ^ZELADOR_ > {out}.env\n")
    script.chmod(0o755)
    config = JOBS + f"""alerts:
  group_wait: 0s
  channels:
    cmd: {{command: {{argv: [{script}], timeout: 10s}}}}
"""
    zel = Zelador(tmp_path, config).start()
    try:
        report(zel, "backup", "fail", "exit 3")
        zel.wait_event("alert_sent")
        doc = json.loads(Path(f"{out}.json").read_text())
        env = dict(line.split("=", 1) for line in Path(f"{out}.env").read_text().splitlines())
        assert doc["alerts"][0]["subject"] == "backup" and "backup failed" in doc["text"]
        assert (env["ZELADOR_SUBJECT"], env["ZELADOR_PROBLEM"], env["ZELADOR_PHASE"]) == \
            ("backup", "failed", "problem")
    finally:
        zel.stop()


def test_alerts_cli_lists_and_tests(tmp_path: Path, receiver: Receiver) -> None:
    zel = Zelador(tmp_path, JOBS + hook_config(receiver)).start()
    try:
        report(zel, "backup", "fail", "disk full")
        zel.wait_event("alert_sent")
        base = ["-c", str(zel.config_path)]
        shown = subprocess.run([*ZELADOR, "alerts", *base, "--state-dir",
                                str(tmp_path / "state")], capture_output=True, text=True)
        assert shown.returncode == 0
        assert "job backup: failed since" in shown.stdout and "1 sent" in shown.stdout
        sent = subprocess.run([*ZELADOR, "alerts", "test", "hook", *base], capture_output=True,
                              text=True)
        assert sent.returncode == 0 and "hook (webhook): sent" in sent.stdout
        assert receiver.alerts()[-1]["phase"] == "test"
        receiver.mode = "fail"
        broken = subprocess.run([*ZELADOR, "alerts", "test", *base], capture_output=True,
                                text=True)
        assert broken.returncode == 1 and "HTTP 500" in broken.stderr
        unknown = subprocess.run([*ZELADOR, "alerts", "test", "nope", *base],
                                 capture_output=True, text=True)
        assert unknown.returncode == 64 and "known: hook" in unknown.stderr
    finally:
        zel.stop()
