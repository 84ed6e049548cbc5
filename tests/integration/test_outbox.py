"""The outbox keeper with real SQLite and real threads, and a recording channel in place of a
server: what is written before any attempt, retries, grouping, superseding, giving up, restart."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from zelador.alerts.incidents import Incidents, route
from zelador.alerts.outbox import Batch, Outbox, Outcome
from zelador.config.model import Alerts, Channel, Webhook
from zelador.events import Event, event


class Recorder:
    """A channel whose answers the test decides: ok, fail, or wait until released."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()

    def send(self, batch: Batch) -> Outcome:
        self.gate.wait(10)
        if self.fail:
            return Outcome(False, error="HTTP 500 broken")
        self.batches.append(batch)
        return Outcome(True, ref=f"ref{len(self.batches)}")

    def items(self) -> list[dict[str, Any]]:
        return [i for b in self.batches for i in b.items]


class Rig:
    def __init__(self, tmp: Path, **settings: Any) -> None:
        defaults: dict[str, Any] = {"group_wait": 0.0, "retry_first": 0.1, "retry_max": 0.2}
        self.settings = Alerts(channels=(Channel("hook", Webhook("http://127.0.0.1:1/")),),
                               **{**defaults, **settings})
        self.path = str(tmp / "alerts.db")
        self.channel = Recorder()
        self.said: list[Event] = []
        self.open()

    def open(self) -> None:
        self.outbox = Outbox(self.path, self.settings, build=lambda c: self.channel, host="pos-1",
                             report=self.said.append)
        self.incidents = Incidents(self.settings, self.outbox.restored())
        self.outbox.start()

    def feed(self, kind: str, name: str = "backup", at: float = 1000.0) -> None:
        notices = self.incidents.observe(event(kind, f"{name}: {kind}", subject=name,
                                               subject_kind="job"), at, at)
        self.outbox.submit([(n, route(n, self.settings)) for n in notices])

    def states(self) -> list[tuple[str, str]]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute("SELECT phase, state FROM outbox ORDER BY id").fetchall()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.said]


def test_a_problem_is_a_row_then_sent_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.channel.gate.clear()  # hold the attempt: the row must already be there
        rig.feed("job_failed")
        wait_for(lambda: rig.states() == [("problem", "sending")], what="row written first")
        rig.channel.gate.set()
        wait_for(lambda: rig.states() == [("problem", "sent")], what="marked sent")
        assert [i["problem"] for i in rig.channel.items()] == ["failed"]
        assert rig.kinds() == ["alert_sent"]
    finally:
        rig.outbox.close()


def test_failed_attempts_are_retried_then_sent_exactly_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.channel.fail = True
        rig.feed("job_failed")
        wait_for(lambda: rig.kinds().count("alert_failed") >= 2, what="two failed attempts")
        rig.channel.fail = False
        wait_for(lambda: rig.states() == [("problem", "sent")], what="sent after retries")
        assert len(rig.channel.items()) == 1
        failed = [e for e in rig.said if e.kind == "alert_failed"]
        assert failed[0].field("channel") == "hook" and "HTTP 500" in failed[0].message
    finally:
        rig.outbox.close()


def test_recovery_of_an_unsent_problem_is_one_episode(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.channel.fail = True
        rig.feed("job_failed", at=1000.0)
        wait_for(lambda: "alert_failed" in rig.kinds(), what="a failed attempt")
        rig.feed("job_ok", at=1600.0)
        rig.channel.fail = False
        wait_for(lambda: ("episode", "sent") in rig.states(), what="the episode sent")
        assert rig.states() == [("problem", "superseded"), ("episode", "sent")]
        (item,) = rig.channel.items()
        assert (item["opened"], item["closed"]) == (1000.0, 1600.0)
    finally:
        rig.outbox.close()


def test_problems_within_group_wait_are_one_message(tmp_path: Path) -> None:
    rig = Rig(tmp_path, group_wait=0.5)
    try:
        for name in ("a", "b", "c"):
            rig.feed("job_failed", name=name)
        wait_for(lambda: rig.states() == [("problem", "sent")] * 3, what="all sent")
        assert len(rig.channel.batches) == 1
        assert [i["subject"] for i in rig.channel.batches[0].items] == ["a", "b", "c"]
    finally:
        rig.outbox.close()


def test_not_sent_within_give_up_after_is_marked_failed(tmp_path: Path) -> None:
    rig = Rig(tmp_path, give_up_after=0.3)
    try:
        rig.channel.fail = True
        rig.feed("job_failed")
        wait_for(lambda: "alert_given_up" in rig.kinds(), what="given up")
        assert rig.states() == [("problem", "failed")]
    finally:
        rig.outbox.close()


def test_rows_left_sending_are_sent_again_at_the_next_start(tmp_path: Path) -> None:
    """zelador stopped while an attempt hung past CLOSE_WAIT (or died, as kill -9 does in
    test_alerts.py): the row is still `sending`, and is sent at the next start."""
    rig = Rig(tmp_path)
    rig.channel.gate.clear()
    rig.feed("job_failed")
    wait_for(lambda: rig.states() == [("problem", "sending")], what="attempt under way")
    rig.outbox.close()  # waits CLOSE_WAIT for the attempt, then leaves it
    assert rig.states() == [("problem", "sending")]
    rig.channel.gate.set()
    wait_for(lambda: len(rig.channel.batches) == 1, what="the first attempt ended")
    rig.channel.batches.clear()
    rig.open()
    try:
        wait_for(lambda: rig.states() == [("problem", "sent")], what="sent after restart")
        assert len(rig.channel.batches) == 1  # the documented gap: at least once
        assert list(rig.incidents.open) == ["job/backup/failed"]  # the incident came back too
    finally:
        rig.outbox.close()


def test_a_recovery_names_the_messages_it_is_about(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.feed("job_failed", name="a")
        wait_for(lambda: rig.states() == [("problem", "sent")], what="problem sent")
        rig.feed("job_ok", name="a")
        wait_for(lambda: len(rig.channel.batches) == 2, what="recovery sent")
        (previous,) = rig.channel.batches[1].previous
        assert previous.ref == "ref1"
        assert previous.items[0]["subject"] == "a" and previous.items[0]["closed"]
        assert rig.channel.batches[1].items[0]["phase"] == "recovery"
    finally:
        rig.outbox.close()


def test_recovery_written_during_a_failing_attempt_becomes_one_episode(tmp_path: Path) -> None:
    """The problem's attempt was under way when the recovery came, then failed: the problem must
    not go out after its own recovery (a Telegram message nobody deletes)."""
    rig = Rig(tmp_path, retry_first=0.5, retry_max=0.5)
    try:
        rig.channel.gate.clear()
        rig.feed("job_failed", at=1000.0)
        wait_for(lambda: rig.states() == [("problem", "sending")], what="attempt under way")
        rig.feed("job_ok", at=1060.0)
        wait_for(lambda: len(rig.states()) == 2, what="recovery written")
        rig.channel.fail = True
        rig.channel.gate.set()
        wait_for(lambda: "alert_failed" in rig.kinds(), what="the attempt failed")
        rig.channel.fail = False
        wait_for(lambda: ("episode", "sent") in rig.states(), what="one episode sent")
        assert rig.states() == [("problem", "superseded"), ("episode", "sent")]
        assert [i["phase"] for i in rig.channel.items()] == ["episode"]
    finally:
        rig.outbox.close()


def test_a_channel_over_its_rate_limit_waits_and_groups_what_piles_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.settings = Alerts(channels=(Channel("hook", Webhook("http://127.0.0.1:1/"), rate=1,
                                            per=1.0),), group_wait=0.0)
    rig.outbox.close()
    rig.open()
    stamps: list[float] = []
    send = rig.channel.send
    rig.channel.send = lambda batch: (stamps.append(time.monotonic()), send(batch))[1]  # type: ignore[method-assign]
    try:
        rig.feed("job_failed", name="a")
        wait_for(lambda: len(rig.channel.batches) == 1, what="the first message")
        rig.feed("job_failed", name="b")
        rig.feed("job_failed", name="c")
        wait_for(lambda: len(rig.channel.batches) == 2, what="the second message")
        assert [i["subject"] for i in rig.channel.batches[1].items] == ["b", "c"]
        # one message per second: the limit held. zelador stamps each attempt as it begins,
        # a moment before this wrapper does (and the first moment may be the longer one)
        assert stamps[1] - stamps[0] >= 0.99
    finally:
        rig.outbox.close()
