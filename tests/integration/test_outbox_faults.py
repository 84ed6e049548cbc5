"""The outbox under its own faults (issue 19): a store locked past the busy timeout, a damaged
row, a keeper or a sender thread that ends, more notices than memory may hold. Nothing ends the
keeper, each condition is said once (and once when it clears), and no notice is lost."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.test_outbox import Rig
from zelador.alerts import outbox
from zelador.alerts.lanes import Batch, Outcome


def degraded(rig: Rig) -> list[str]:
    return [e.message for e in rig.said if e.kind == "degraded"]


def test_a_store_locked_past_the_busy_timeout_is_said_once_and_the_notice_kept(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    holder = sqlite3.connect(rig.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        rig.feed("job_failed")
        wait_for(lambda: degraded(rig), 20, "the store's trouble said")
        (said,) = degraded(rig)
        assert said.startswith(f"alerts store {rig.path}: database is locked (another process "
                               "held it for over 5 s); trying again in 1s (1 notices wait")
        assert "rollback" not in said
        holder.execute("COMMIT")
        wait_for(lambda: rig.states() == [("problem", "sent")], 40, "stored and sent after all")
        assert degraded(rig)[1:] == [f"alerts store {rig.path} works again (after: database is "
                                     "locked (another process held it for over 5 s))"]
        assert rig.outbox.alive()
    finally:
        holder.close()
        rig.outbox.close()


def test_a_damaged_row_is_set_aside_and_the_others_go_out(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    try:
        rig.channel.gate.clear()
        with sqlite3.connect(rig.path) as conn:  # (created now: not pruned as old)
            conn.execute("INSERT INTO outbox (channel, phase, created, due, state, item) VALUES "
                         "('hook', 'problem', ?, 1.0, 'pending', '{not json')", (time.time(),))
        rig.feed("job_failed")
        rig.channel.gate.set()
        wait_for(lambda: rig.states() == [("problem", "failed"), ("problem", "sent")],
                 what="the damaged row set aside, the good one sent")
        given_up = [e for e in rig.said if e.kind == "alert_given_up"]
        assert len(given_up) == 1 and "is damaged in" in given_up[0].message
        assert [i["subject"] for i in rig.channel.items()] == ["backup"]
    finally:
        rig.outbox.close()


ENDED = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@ENDED
def test_a_keeper_that_ended_is_seen_and_restarted_with_nothing_lost(tmp_path: Path,
                                                                     monkeypatch) -> None:
    rig = Rig.__new__(Rig)
    ends = [True]
    real_build = None

    def build(channel):  # ends the keeper the first time (as an interpreter fault would)
        if ends:
            ends.clear()
            raise SystemExit("keeper gone")
        return real_build(channel)

    Rig.__init__(rig, tmp_path)  # started with the recorder; now replace its build
    rig.outbox.close()
    rig.outbox = outbox.Outbox(rig.path, rig.settings, build=build, host="pos-1",
                               report=rig.said.append)
    real_build = lambda c: rig.channel  # noqa: E731
    rig.outbox.start()
    try:
        wait_for(lambda: not rig.outbox.alive(), what="the keeper ended")
        rig.feed("job_failed")  # held in memory meanwhile
        assert rig.outbox.restart() == ["alert outbox keeper"]
        wait_for(lambda: rig.states() == [("problem", "sent")], what="sent by the new keeper")
        assert rig.outbox.alive() and rig.outbox.restart() == []
    finally:
        rig.outbox.close()


class Dies:
    """A channel whose first attempt ends its thread (a BaseException the lane cannot catch)."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.first = threading.Event()

    def send(self, batch: Batch) -> Outcome:
        if not self.first.is_set():
            self.first.set()
            raise SystemExit("sender gone")
        self.batches.append(batch)
        return Outcome(True, ref="r1")


@ENDED
def test_a_sender_thread_that_ended_is_restarted_and_its_batch_sent(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.channel = Dies()  # type: ignore[assignment]
    rig.outbox.close()
    rig.open()
    try:
        rig.feed("job_failed")
        wait_for(lambda: not rig.outbox.alive(), what="the sender thread ended")
        assert rig.states() == [("problem", "sending")]
        assert rig.outbox.restart() == ["alert sender hook"]
        wait_for(lambda: rig.states() == [("problem", "sent")], what="sent after the restart")
        assert [i["subject"] for b in rig.channel.batches for i in b.items] == ["backup"]
        failed = [e for e in rig.said if e.kind == "alert_failed"]
        assert "the sender thread ended during the attempt" in failed[0].message
    finally:
        rig.outbox.close()


def test_submit_is_bounded_and_says_what_it_could_not_keep(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(outbox, "MAX_HELD", 5)
    rig = Rig.__new__(Rig)
    Rig.__init__(rig, tmp_path)
    rig.outbox.close()  # no keeper: everything waits in memory
    rig.outbox = outbox.Outbox(rig.path, rig.settings, build=lambda c: rig.channel,
                               host="pos-1", report=rig.said.append)
    for n in range(8):
        rig.feed("job_failed", name=f"job{n}")
    assert rig.outbox.dropped == 3
    assert degraded(rig) == [f"alerts: 1 notices dropped ({n} so far): 5 already wait for "
                             f"{rig.path}" for n in (1, 2, 3)]
    rig.outbox.start()  # the five kept are stored and sent
    try:
        wait_for(lambda: rig.states() == [("problem", "sent")] * 5, what="the kept five sent")
    finally:
        rig.outbox.close()


@pytest.mark.parametrize("error", ["database or disk is full", "disk I/O error"])
def test_describe_names_a_full_disk(error: str) -> None:
    text = outbox.describe(sqlite3.OperationalError(error))
    assert text.startswith("disk full") == (error == "database or disk is full")
