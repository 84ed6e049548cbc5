"""A job's phases and the history's view of a run: plain data, light to import (the history
reader and `zelador history` need them without the calendar arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class JobPhase(str, Enum):
    NEW = "NEW"
    RUNNING = "RUNNING"
    OK = "OK"
    FAIL = "FAIL"
    TIMEOUT = "TIMEOUT"
    MISSED = "MISSED"

    @property
    def problem(self) -> bool:
        return self in (JobPhase.FAIL, JobPhase.TIMEOUT, JobPhase.MISSED)


@dataclass(frozen=True)
class RunRow:
    """A run as the history keeps it; written again (same job and run id) when it ends."""

    job: str
    run_id: str
    state: JobPhase  # RUNNING, OK, FAIL or TIMEOUT
    started: float | None
    ended: float | None = None
    exit_status: int | None = None
    duration: float | None = None
    message: str = ""
    output: str = ""
