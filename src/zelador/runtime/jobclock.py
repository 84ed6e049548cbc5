"""The jobs' clock: the boot clock, set to the wall clock when zelador first starts in a boot.

Deadlines of runs (`max_runtime`), `every`, `grace` and durations are measured on it, so a step
of the wall clock (an RTC a year wrong at boot, NTP stepping it an hour) neither fires nor delays
them. `skew()` is the wall clock minus this one; it changes only on a step (beyond STEP_SLACK),
so moments worked out with it stay exact. CLOCK_BOOTTIME counts a suspend too (a run that was
suspended for an hour ran for that hour); where Python lacks it, CLOCK_MONOTONIC.

Saved with the job states (`saved()`) and taken back at start (`adopt()`): within the same boot
(the kernel's boot_id) zelador goes on with the same clock, so a step while zelador was stopped
moves nothing either; after a reboot the saved moments are moved onto the new boot's clock.

Tests shift only zelador's wall clock with ZELADOR_TEST_WALL_OFFSET_FILE: a file holding seconds
to add to time.time() (read on every look; unset in production).
"""

from __future__ import annotations

import os
import time
from typing import Any

STEP_SLACK = 0.5
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def boot_id() -> str:
    try:
        with open(_BOOT_ID, encoding="ascii") as stream:
            return stream.read().strip()
    except OSError:
        return ""


class JobClock:
    def __init__(self) -> None:
        self._offset_file = os.environ.get("ZELADOR_TEST_WALL_OFFSET_FILE")
        self.anchor = self.wall() - self.boot()
        self._skew = 0.0

    def boot(self) -> float:
        return time.clock_gettime(_CLOCK)

    def wall(self) -> float:
        now = time.time()
        if self._offset_file:
            try:
                with open(self._offset_file, encoding="ascii") as stream:
                    now += float(stream.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return now

    def now(self) -> float:
        return self.boot() + self.anchor

    def skew(self) -> float:
        """Wall clock minus job clock; moves only when the wall clock was stepped."""
        measured = self.wall() - self.now()
        if abs(measured - self._skew) > STEP_SLACK:
            self._skew = measured
        return self._skew

    def saved(self) -> dict[str, Any]:
        return {"boot": boot_id(), "anchor": self.anchor, "skew": self.skew()}

    def adopt(self, saved: object) -> tuple[float, float, float]:
        """Take a saved clock back: (shift for the states just made, shift for the saved ones,
        the saved skew). Same boot: the saved clock goes on; else the saved moments move onto
        this one (by the skew they were saved with: they become wall moments)."""
        if not isinstance(saved, dict):
            return 0.0, 0.0, 0.0
        skew, anchor = saved.get("skew"), saved.get("anchor")
        skew = float(skew) if isinstance(skew, (int, float)) and abs(skew) < 2**40 else 0.0
        if (saved.get("boot") == boot_id() and boot_id() and isinstance(anchor, (int, float))
                and abs(anchor) < 2**40):
            by = float(anchor) - self.anchor
            self.anchor = float(anchor)
            self._skew = self.wall() - self.now()
            if abs(self._skew) <= STEP_SLACK:
                self._skew = 0.0
            return by, 0.0, skew
        return 0.0, skew, skew
