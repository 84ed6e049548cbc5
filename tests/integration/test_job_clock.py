"""Clock steps against a real daemon (issue 19): only zelador's wall clock is shifted, through
ZELADOR_TEST_WALL_OFFSET_FILE (runtime/jobclock.py); run deadlines and `every` are on the boot
clock, so a step of an hour or a year neither fires nor delays a TIMEOUT or a MISSED."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.integration.test_jobs import job, job_events, jobs_config, send_lines

HOUR, YEAR = 3600, 365 * 86400


@pytest.mark.parametrize("step", [HOUR, -HOUR, YEAR, -YEAR])
def test_a_step_of_the_wall_clock_during_a_run(zelador_factory, tmp_path: Path, step: int) -> None:
    offset = tmp_path / "wall-offset"
    offset.write_text("0")
    port = free_port()
    z = zelador_factory(jobs_config(port, "  slow: {every: 1h, max_runtime: 4s, grace: 1m}"),
                        ZELADOR_TEST_WALL_OFFSET_FILE=str(offset)).start()
    assert send_lines(port, b"name=slow;state=start;run=a\n") == ["OK"]
    started = time.monotonic()
    wait_for(lambda: job(z, "slow")["state"] == "RUNNING", what="RUNNING")
    offset.write_text(str(step))  # NTP steps the clock 1 s into the run
    time.sleep(1.0)
    assert send_lines(port, b"name=slow;state=start;run=b\n") == ["OK"]  # the book looks now
    assert job(z, "slow")["state"] == "RUNNING"  # no instant TIMEOUT, no MISSED
    z.wait_event("job_timeout", timeout=15)
    took = time.monotonic() - started
    assert 3.5 < took < 10, took  # max_runtime on the boot clock: neither early nor late
    timeout = job_events(z, "job_timeout", "slow")[0]
    assert 3_500_000 <= int(timeout["duration_usec"]) < 10_000_000  # not 4 s plus the step
    assert not job_events(z, "job_missed", "slow")
    shown = job(z, "slow")
    assert abs(shown["last"]["ended"] - (time.time() + step)) < 30  # shown on the wall clock
