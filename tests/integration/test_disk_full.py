"""A full disk (a small tmpfs filled, then freed): nothing is lost, it is said once when it begins
and once when it clears, and what waited is written when space returns."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.integration.test_outbox import Rig
from zelador.alerts.incidents import route
from zelador.events import event
from zelador.store import state


class Tmpfs:
    def __init__(self, where: Path) -> None:
        self.where = where
        self.filler = where / "filler"

    def fill(self) -> None:
        """Take every free byte (tmpfs: no reserve for root)."""
        with open(self.filler, "ab", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    where = tmp_path / "small"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield Tmpfs(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_the_state_file_says_disk_full_once_and_catches_up(tmpfs: Tmpfs) -> None:
    path = str(tmpfs.where / "state.json")
    said: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def tell(text: str, cleared: bool) -> None:
        with lock:
            said.append((text, cleared))

    writer = state.StateWriter(path, tell)
    try:
        writer.save({"n": 0})
        wait_for(lambda: os.path.exists(path), what="the first write")
        tmpfs.fill()
        big = {"n": 1, "pad": "x" * 65536}  # more than the free blocks
        for n in range(1, 30):
            writer.save({**big, "n": n})
        wait_for(lambda: said, what="the disk-full line")
        assert said == [(f"cannot write state file {path}: disk full (No space left on device); "
                         "trying again (supervision goes on)", False)]
        assert json.loads(Path(path).read_text()) == {"n": 0}  # the old file, whole
        assert not [p for p in os.listdir(tmpfs.where) if p.endswith(".tmp")]
        tmpfs.free()
        wait_for(lambda: len(said) == 2, 15, "the line saying it clears")
        assert said[1] == (f"state file {path} written again", True)
        assert json.loads(Path(path).read_text())["n"] == 29  # the latest, without a new save
    finally:
        assert writer.close()
    assert len(said) == 2


def test_a_notice_raised_while_the_disk_is_full_is_kept_and_sent_when_space_returns(
        tmpfs: Tmpfs) -> None:
    rig = Rig(tmpfs.where)  # alerts.db on the small tmpfs
    try:
        rig.feed("job_failed", name="first")
        wait_for(lambda: rig.states() == [("problem", "sent")], what="the first one sent")
        tmpfs.fill()
        big = "x" * 300_000  # more than any WAL page SQLite could reuse
        notices = rig.incidents.observe(event("job_failed", big, subject="backup",
                                              subject_kind="job"), 2000.0, 2000.0)
        rig.outbox.submit([(n, route(n, rig.settings)) for n in notices])
        wait_for(lambda: [e for e in rig.said if e.kind == "degraded"], 20, "disk full said")
        said = [e.message for e in rig.said if e.kind == "degraded"]
        assert said == [f"alerts store {rig.path}: disk full (database or disk is full); "
                        "trying again in 1s (1 notices wait in memory; supervision goes on)"]
        assert rig.states() == [("problem", "sent")]  # not a row yet: held in memory
        assert rig.outbox.alive()
        tmpfs.free()
        wait_for(lambda: rig.states() == [("problem", "sent")] * 2, 60,
                 "stored and sent once space returned")
        assert [i["subject"] for i in rig.channel.items()] == ["first", "backup"]
        said = [e.message for e in rig.said if e.kind == "degraded"]
        assert said[1:] == [f"alerts store {rig.path} works again (after: disk full (database "
                            "or disk is full))"]
    finally:
        rig.outbox.close()


def test_an_outbox_opened_on_a_full_disk_keeps_notices_until_it_can_store_them(
        tmpfs: Tmpfs) -> None:
    rig = Rig(tmpfs.where)
    rig.feed("job_failed", name="first")
    wait_for(lambda: rig.states() == [("problem", "sent")], what="the first one sent")
    rig.outbox.close()  # a clean stop: SQLite removes the -wal and -shm
    tmpfs.fill()
    rig.open()  # zelador restarted while the disk is full
    try:
        assert rig.outbox.alive()
        rig.feed("job_failed", name="second")
        wait_for(lambda: [e for e in rig.said if e.kind == "degraded"], 20, "the trouble said")
        said = [e.message for e in rig.said if e.kind == "degraded"]
        assert len(said) == 1 and said[0].startswith(f"alerts store {rig.path}: disk full"), said
        tmpfs.free()
        wait_for(lambda: [i["subject"] for i in rig.channel.items()] == ["first", "second"], 60,
                 "the second one stored and sent once space returned")
        assert rig.states() == [("problem", "sent")] * 2
    finally:
        rig.outbox.close()
