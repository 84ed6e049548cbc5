"""Random faults against the outbox's promises, with real SQLite and real threads: a channel that
fails, answers slowly, and a keeper stopped and started again at random moments, while problems
open and close. Invariants, checked on what the channel received:

- no alert is delivered twice (the keeper's stops here are clean: an attempt under way finishes);
- per incident: a problem before its reminders and recovery; a recovery only after a delivered
  problem; an `episode` only for a problem that was never delivered, and never both;
- once the faults stop, everything is delivered (nothing pending).

Reproduce a run with ZELADOR_FAULT_SEED=N (printed on failure).
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import wait_for
from tests.integration.test_outbox import Rig
from zelador.alerts.outbox import Batch, Outcome


class Flaky:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.lock = threading.Lock()
        self.failing = 0.3
        self.delivered: list[dict[str, Any]] = []

    def send(self, batch: Batch) -> Outcome:
        with self.lock:
            fail = self.rng.random() < self.failing
            pause = self.rng.random() * 0.02
        time.sleep(pause)  # a slow server: the keeper goes on meanwhile
        if fail:
            return Outcome(False, error="HTTP 503 busy")
        with self.lock:
            self.delivered += batch.items
        return Outcome(True, ref=f"r{len(self.delivered)}")


def check(delivered: list[dict[str, Any]], seed: int) -> None:
    seen: set[tuple[str, str, float]] = set()
    by_incident: dict[tuple[str, float], list[str]] = {}
    for item in delivered:
        mark = (item["key"], item["phase"], item["at"])
        assert mark not in seen, f"seed {seed}: delivered twice: {mark}"
        seen.add(mark)
        by_incident.setdefault((item["key"], item["opened"]), []).append(item["phase"])
    for (key, opened), phases in by_incident.items():
        where = f"seed {seed}: {key} opened {opened}: {phases}"
        if "episode" in phases:
            assert phases == ["episode"], where
            continue
        assert phases[0] == "problem" and phases.count("problem") == 1, where
        assert phases.count("recovery") <= 1 and ("recovery" not in phases or
                                                 phases[-1] == "recovery"), where


def test_random_faults_keep_the_outbox_promises(tmp_path: Path) -> None:
    seed = int(os.environ.get("ZELADOR_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    rig = Rig(tmp_path, retry_first=0.02, retry_max=0.05, group_wait=0.01)
    flaky = Flaky(rng)
    rig.channel = flaky  # type: ignore[assignment]
    # no rate limit: 20 attempts a minute (the default) can be spent before the faults stop,
    # and the rest would then wait past the deadline below
    rig.settings = dataclasses.replace(rig.settings, channels=tuple(
        dataclasses.replace(c, rate=100_000) for c in rig.settings.channels))
    rig.outbox.close()
    rig.open()
    clock = 1_000.0
    try:
        for _ in range(300):
            clock += rng.random() * 60
            roll = rng.random()
            if roll < 0.05:
                rig.outbox.close()  # zelador restarted
                rig.open()
            else:
                rig.feed(rng.choice(("job_failed", "job_ok", "job_ok")),
                         name=f"job{rng.randrange(5)}", at=clock)
            time.sleep(rng.random() * 0.01)
        flaky.failing = 0.0
        wait_for(lambda: all(s in ("sent", "superseded") for _, s in rig.states()), timeout=30,
                 what=f"everything delivered (seed {seed})")
        check(flaky.delivered, seed)
        assert flaky.delivered, f"seed {seed}: nothing was delivered"
    finally:
        rig.outbox.close()
