"""The jobs, wired: their states, the reports that reach them, the timer for their deadlines.

Runs on the loop thread. Reports come from the control socket (`zelador report`, `zelador exec`)
and from the TCP intake's thread (posted to the loop in batches); each goes through the pure
engine (jobs/engine.py), whose events go to every sink and whose run rows go to the history.

Job moments are on the jobs' clock (runtime/jobclock.py: the boot clock, set to the wall clock at
first start), so a step of the wall clock moves no run deadline, `every` or `grace`; cron
moments follow the wall clock (the engine maps them with the clock's skew). The book sleeps at
most a minute at a time, so a step is seen within a minute. What it shows and records (status,
the history's runs) is in wall-clock time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from zelador.config.model import Job
from zelador.events import Event, Sink
from zelador.jobs.engine import (
    Input,
    JobState,
    Reconfigured,
    Refused,
    Report,
    RunRow,
    Tick,
    deadline,
    initial,
    shifted,
    step,
)
from zelador.jobs.intake import LINE_CAP, MAX_DURATION, RUN_ID, Directory, reason_kind
from zelador.jobs.schedule import format_moment
from zelador.runtime.jobclock import JobClock
from zelador.runtime.loop import Loop, Timer

LONGEST_SLEEP = 60.0
OUTPUT_KEPT = 10 * 1024  # characters of a run's output a report may carry
REJECTS_SAID_EVERY = 60.0  # a flood of bad reports is one journal line a minute


class JobBook:
    def __init__(self, jobs: Sequence[Job], *, loop: Loop, sinks: Sequence[Sink],
                 record_run: Callable[[RunRow], None] | None = None,
                 clock: JobClock | None = None) -> None:
        self.loop = loop
        self.sinks = list(sinks)
        self._record_run = record_run
        self.clock = clock or JobClock()
        self.jobs = {job.name: job for job in jobs}
        now, skew = self.clock.now(), self.clock.skew()
        self.states: dict[str, JobState] = {name: initial(job, now, skew)
                                            for name, job in self.jobs.items()}
        self._timer: Timer | None = None
        self.rejected = 0  # bad reports since zelador started
        self.refused = 0  # reports the engine refused (too many open runs)
        self.applied = 0  # the id (history) of the last report applied, saved with the states
        self._unsaid: dict[str, int] = {}  # rejections not journaled yet, per kind: O(1) memory
        self._last = ""  # the last one's text
        self._said_at = -REJECTS_SAID_EVERY
        self._say_timer: Timer | None = None

    @property
    def directory(self) -> Directory:
        return Directory(frozenset(self.jobs),
                         {job.id: job.name for job in self.jobs.values() if job.id is not None})

    def start(self) -> None:
        """The first look (deadlines that passed while zelador was away), then the timer."""
        self.tick()

    def report(self, name: str, report: Report, arm: bool = True,
               at: float | None = None) -> JobState:
        """Apply a report; `at` (wall time, not in the future) for one that was held back
        (`zelador exec` while zelador was down) and arrives late."""
        self.offer(name, report, arm=arm, at=at)
        return self.states[name]

    def offer(self, name: str, report: Report, *, arm: bool = True, at: float | None = None,
              ident: int | None = None) -> str:
        """Apply a report: "" when applied, else why it was refused (too many open runs). `ident`
        is its id in the history (the saved state says up to which one was applied)."""
        verdict = self._feed(name, report, at)
        if ident is not None:
            self.applied = max(self.applied, ident)
        if verdict:
            self.refused += 1
            self.reject(verdict)
        if arm:
            self.arm()
        return verdict

    def rejections(self, kinds: Mapping[str, int], sample: str = "") -> None:
        """Lines the TCP intake refused, counted per kind (`sample`: the text of one)."""
        for kind, count in kinds.items():
            self.rejected += count
            self._unsaid[kind] = self._unsaid.get(kind, 0) + count
        if sample:
            self._last = sample
        self._say_rejects()

    def reject(self, reason: str) -> None:
        """A bad report from the control socket (an unknown job), or one the engine refused."""
        self.rejections({reason_kind(reason): 1}, reason)

    def _say_rejects(self) -> None:
        if not self._unsaid:
            return
        now = self.loop.clock()
        if now - self._said_at < REJECTS_SAID_EVERY:
            if self._say_timer is None:
                self._say_timer = self.loop.at(self._said_at + REJECTS_SAID_EVERY, self._said_later)
            return
        count = sum(self._unsaid.values())
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self._unsaid.items(),
                                                              key=lambda item: -item[1]))
        self._unsaid = {}
        self._said_at = now
        what = "a job report" if count == 1 else f"{count} job reports"
        last = f"; last: {self._last}" if self._last else ""
        ev = Event("report_rejected", f"rejected {what} in the last minute ({kinds}){last}",
                   priority=4).with_fields(count=count, rejected_total=self.rejected)
        for sink in self.sinks:
            sink.emit(ev)

    def _said_later(self) -> None:
        self._say_timer = None
        self._say_rejects()

    def restore(self, states: Mapping[str, JobState], saved_clock: object) -> None:
        """States from the state file (the others as they are) and the clock they were saved
        with (runtime/jobclock.py: the same boot goes on with it; else they are moved)."""
        fresh_by, saved_by, skew = self.clock.adopt(saved_clock)
        for name, st in states.items():
            if st is self.states.get(name):
                self.states[name] = shifted(st, fresh_by) if fresh_by else st
            else:
                st = dataclasses.replace(st, skew=skew)
                self.states[name] = shifted(st, saved_by) if saved_by else st

    def tick(self) -> None:
        for name in self.jobs:
            self._feed(name, Tick())
        self.arm()

    def reconfigure(self, jobs: Sequence[Job]) -> None:
        old = self.jobs
        self.jobs = {job.name: job for job in jobs}
        now, skew = self.clock.now(), self.clock.skew()
        for name, job in self.jobs.items():
            if name not in old:
                self.states[name] = initial(job, now, skew)
            elif old[name] != job:
                self._feed(name, Reconfigured(old[name]))
        for name in set(self.states) - set(self.jobs):
            del self.states[name]
        self.arm()

    def reconcile(self, old: Mapping[str, Job]) -> None:
        """States restored from a save made under other settings (the config was edited while
        zelador was stopped): work out their schedule and run deadlines again."""
        for name, previous in old.items():
            if name in self.jobs:
                self._feed(name, Reconfigured(previous))

    def _feed(self, name: str, given: Input, at: float | None = None) -> str:
        """`at`: a wall-clock moment (a report held back)."""
        now, skew = self.clock.now(), self.clock.skew()
        state, actions = step(self.jobs[name], self.states[name], given,
                              now if at is None else min(at - skew, now), skew)
        self.states[name] = state
        verdict = ""
        for action in actions:
            if isinstance(action, Event):
                for sink in self.sinks:
                    sink.emit(action)
            elif isinstance(action, Refused):
                verdict = action.reason
            elif self._record_run is not None:  # (in wall-clock time)
                self._record_run(action if not skew else dataclasses.replace(
                    action, started=None if action.started is None else action.started + skew,
                    ended=None if action.ended is None else action.ended + skew))
        return verdict

    def arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        moments = [m for name, job in self.jobs.items()
                   if (m := deadline(job, self.states[name])) is not None]
        if not moments:
            return
        wait = min(max(0.0, min(moments) - self.clock.now()), LONGEST_SLEEP)
        self._timer = self.loop.at(self.loop.clock() + wait, self.tick)

    # --- what `zelador jobs` and `zelador status` show -------------------------------------------

    def status(self) -> list[dict[str, Any]]:
        skew = self.clock.skew()
        return [job_status(job, self.states[name], skew) for name, job in self.jobs.items()]

    def one(self, name: str) -> dict[str, Any]:
        return job_status(self.jobs[name], self.states[name], self.clock.skew())


def job_status(job: Job, state: JobState, skew: float = 0.0) -> dict[str, Any]:
    """What `zelador jobs` shows of a job, its moments on the wall clock (`skew` ahead)."""
    state = shifted(state, skew) if skew else state
    last = state.last
    return {
        "name": job.name,
        "state": state.phase.value,
        "since": state.since,
        "schedule": job.cron if job.cron is not None else f"every {job.every:g}s",
        "timezone": job.timezone,
        "expected": state.expected,
        "expected_text": format_moment(state.expected, job.timezone),
        "running": [{"run": r.run_id, "started": r.started, "deadline": r.deadline}
                    for r in state.runs],
        "last": None if last is None else {
            "run": last.run_id, "result": last.result.value, "started": last.started,
            "ended": last.ended, "exit_status": last.exit_status, "duration": last.duration,
            "message": last.message},
        "last_ok": state.last_ok,
        "reason": state.reason,
        "problem": state.phase.problem,
    }


def report_from(request: dict[str, Any]) -> tuple[Report, float | None]:
    """A control request's report and its time (`at`, for a report held back); raises
    TypeError or ValueError with what is wrong."""
    verb = request.get("verb")
    if verb not in ("start", "ok", "fail"):
        raise ValueError(f"{verb!r} is not start, ok or fail")
    at = request.get("at")
    if at is not None and (not isinstance(at, (int, float)) or isinstance(at, bool)
                           or not 0 <= at < 2**40):
        raise TypeError(f"at={at!r} is not a time")
    run = _text(request.get("run"))[:200] or None
    if run is not None and not RUN_ID.match(run):
        raise ValueError(f"run {run!r} must be 1-64 letters, digits or _ . : @ -")
    status = _int(request.get("exit_status"))
    if status is not None and not 0 <= status <= 255:
        raise ValueError(f"exit status {status} is out of range (0 to 255)")
    report = Report(str(verb), run, status, _text(request.get("message"))[:LINE_CAP],
                    _text(request.get("output"))[-OUTPUT_KEPT:], _float(request.get("duration")),
                    _text(request.get("source"))[:100] or "control")
    return report, None if at is None else float(at)


def report_json(report: Report, at: float | None = None) -> str:
    """A report as kept in the history, to be applied again (`report_of`) after a crash."""
    return json.dumps([report.verb, report.run_id, report.exit_status, report.message,
                       report.duration, report.source, report.output, at], ensure_ascii=False)


def report_of(text: str) -> tuple[Report, float | None]:
    verb, run, status, message, duration, source, output, at = json.loads(text)
    return report_from({"verb": verb, "run": run, "exit_status": status, "message": message,
                        "duration": duration, "source": source, "output": output, "at": at})


def replay_reports(rows: Sequence[tuple[int, float, str, str]], book: JobBook,
                   emit: Callable[[Event], None]) -> None:
    """Reports the history holds that the saved state had not applied yet (zelador was killed
    after answering them OK): applied, each at its own time."""
    applied = 0
    for ident, ts, job, text in rows:
        if job not in book.jobs:
            continue
        try:
            report, at = report_of(text)
        except (ValueError, TypeError) as exc:
            emit(Event("degraded", f"report {ident} in the history cannot be applied again: "
                       f"{exc}", priority=4))
            continue
        book.offer(job, report, arm=False, at=ts if at is None else at, ident=ident)
        applied += 1
    book.arm()
    if applied:
        emit(Event("reports_replayed", f"applied {applied} job reports that were answered OK "
                   "but not yet in the saved state when zelador stopped", priority=5)
             .with_fields(count=applied))


def replay_spool(folder: str, book: JobBook, emit: Callable[[Event], None]) -> None:
    """Apply the reports `zelador exec` kept while zelador was down, oldest file first, each at
    its own time; then remove the files. A file that cannot be read is renamed `.bad`."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    except FileNotFoundError:
        return
    applied, unknown = 0, 0
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as stream:
                requests = json.load(stream)
            if not isinstance(requests, list):
                raise ValueError("not a list of reports")
            for request in requests:
                job = request.get("job") if isinstance(request, dict) else None
                if job not in book.jobs:
                    unknown += 1
                    continue
                report, at = report_from(request)
                book.report(str(job), report, arm=False, at=at)
                applied += 1
            os.unlink(path)
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            with contextlib.suppress(OSError):
                os.replace(path, path + ".bad")
            emit(Event("degraded", f"spooled job reports {path} unreadable ({exc}); kept as "
                       f"{path}.bad", priority=4))
    book.arm()
    if applied or unknown:
        skipped = f"; {unknown} for jobs no longer configured were dropped" if unknown else ""
        emit(Event("reports_replayed", f"applied {applied} job reports that zelador exec kept "
                   f"while zelador was not running{skipped}", priority=5)
             .with_fields(count=applied))


def _text(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def _int(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _float(value: object) -> float | None:
    if value is None:
        return None
    if (not isinstance(value, (int, float)) or isinstance(value, bool)
            or not 0 <= value <= MAX_DURATION):
        raise TypeError(f"expected seconds (0 to {MAX_DURATION:.0f}), got {value!r}")
    return float(value)
