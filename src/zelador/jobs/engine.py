"""What a job's reports and the passing of time mean: the pure job engine.

States (`JobPhase`): NEW before the first expected run, RUNNING after a run started, OK and
FAIL as a run ended, TIMEOUT when a run outlived `max_runtime`, MISSED when no run started within
`grace` of the expected time. The phase is what happened last (an overlapping run still going
is listed among the open runs, not hidden behind RUNNING).

Like the program engine this is plain data in, plain data out: `step(job, state, input, now,
skew)` returns the new state and what to do (events for the journal and history, run rows for
the history). Two clocks (issue 19: terminals boot with a wrong RTC and NTP steps the clock):
`now` is the job clock, which runs with the boot clock (CLOCK_BOOTTIME: steps do not move it,
suspend does) and is set to the wall clock when zelador first starts in a boot; every moment in
a state is on it, so `max_runtime`, `every`, `grace` and durations are immune to steps. `skew`
is the wall clock minus the job clock now: cron moments are worked out on the wall clock in the
job's zone and kept as the job clock's moment for them. When the skew changes (a step), a
cron expectation is mapped again so it follows the wall clock, as the job's timer does; a
window the step jumped over entirely is skipped, not reported MISSED (the clock passed it, not
the job). So a step of an hour or a year neither fires nor delays a TIMEOUT or a MISSED.

One table, `TABLE`, says which handler takes which input.

Expected runs: a start (or an end nobody announced a start for) within `grace` before or after
the expected moment is that moment's run, and the next moment becomes expected; a run started
outside it (someone ran the job by hand) is kept in the history but expects nothing. Runs are
paired with their ends by the run id the reporter gives (`zelador exec` always does); an end
without one closes the oldest open run, so overlapping runs are not mixed up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Union

from zelador.config.durations import format_duration
from zelador.config.model import Job
from zelador.events import Event, event
from zelador.jobs.schedule import Cron, format_moment, next_after
from zelador.jobs.states import JobPhase, RunRow

__all__ = ["JobPhase", "RunRow"]  # re-exported: they live in states.py so readers stay light

JOB = "job"
MESSAGE_CAP = 200  # characters of a reporter's message in a journal line
OUTPUT_CAP = 10 * 1024  # bytes of output kept per run
TIMED_OUT_KEPT = 16  # run ids remembered after a TIMEOUT, so a late end is known for what it is
STEP = 1.0  # seconds: a change of the skew beyond this is a clock step


@dataclass(frozen=True)
class Run:
    """A run that reported its start and not yet its end."""

    run_id: str
    started: float
    deadline: float  # started + max_runtime
    source: str = ""


@dataclass(frozen=True)
class Finished:
    """How the last run ended."""

    run_id: str
    result: JobPhase  # OK, FAIL or TIMEOUT
    ended: float
    started: float | None = None  # None: only its end was reported
    exit_status: int | None = None
    duration: float | None = None
    message: str = ""


@dataclass(frozen=True)
class JobState:
    name: str
    phase: JobPhase = JobPhase.NEW
    since: float = 0.0
    expected: float | None = None  # the next moment a run should start
    runs: tuple[Run, ...] = ()  # open runs, oldest first
    last: Finished | None = None
    last_ok: float | None = None  # when a run last ended OK
    serial: int = 0  # numbers run ids for reporters that give none
    timed_out: tuple[str, ...] = ()
    reason: str = ""
    skew: float = 0.0  # wall clock minus job clock when `expected` was worked out


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A report from the TCP intake, `zelador report` or `zelador exec`."""

    verb: str  # "start", "ok" or "fail"
    run_id: str | None = None
    exit_status: int | None = None
    message: str = ""
    output: str = ""  # the tail of the run's output (zelador exec)
    duration: float | None = None  # measured by the reporter on its monotonic clock
    source: str = ""


@dataclass(frozen=True)
class Tick:
    """Time passed: deadlines may have come."""


@dataclass(frozen=True)
class Reconfigured:
    """The job's settings changed (a reload): schedule and deadlines are worked out again."""

    old: Job


Input = Union[Report, Tick, Reconfigured]


# --- outputs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    """The report was not applied (the state is unchanged): the reporter is told `ERR reason`."""

    reason: str


Action = Union[Event, RunRow, Refused]
Outcome = tuple[JobState, list[Action]]


# --- schedule arithmetic ----------------------------------------------------------------------


def next_expected(job: Job, after: float, skew: float = 0.0) -> float | None:
    """The first moment a run is expected after `after` (interval jobs: `every` after it); job
    clock, the cron worked out on the wall clock (`skew` ahead of it)."""
    if job.cron is not None:
        moment = next_after(Cron(job.cron, job.timezone), after + skew)
        return None if moment is None else moment - skew
    assert job.every is not None
    return after + job.every


def initial(job: Job, now: float, skew: float = 0.0) -> JobState:
    return JobState(job.name, since=now, expected=next_expected(job, now, skew), skew=skew)


def shifted(state: JobState, by: float) -> JobState:
    """The state with every moment moved `by` seconds (onto another boot's job clock)."""
    def move(moment: float | None) -> float | None:
        return None if moment is None else moment + by

    last = state.last
    if last is not None:
        last = dataclasses.replace(last, ended=last.ended + by, started=move(last.started))
    return dataclasses.replace(
        state, since=state.since + by, expected=move(state.expected), last=last,
        last_ok=move(state.last_ok), skew=state.skew - by,
        runs=tuple(dataclasses.replace(r, started=r.started + by, deadline=r.deadline + by)
                   for r in state.runs))


def deadline(job: Job, state: JobState) -> float | None:
    """When `Tick` must next be given (the nearest run deadline or end of grace). Runs are kept
    oldest first and all get the same max_runtime, so the first one's deadline is the nearest."""
    moments = [state.runs[0].deadline] if state.runs else []
    if state.expected is not None:
        moments.append(state.expected + job.grace)
    return min(moments, default=None)


# --- transitions ------------------------------------------------------------------------------


def step(job: Job, state: JobState, given: Input, now: float, skew: float = 0.0) -> Outcome:
    if abs(skew - state.skew) > STEP:
        state = _stepped(job, state, now, skew)
    handler: Callable[[Job, JobState, Input, float], Outcome] = TABLE[type(given)]
    return handler(job, state, given, now)


def _stepped(job: Job, state: JobState, now: float, skew: float) -> JobState:
    """The wall clock was stepped: a cron expectation follows it (the same wall moment); one
    whose whole window the step jumped over is skipped. Nothing else moves."""
    expected = state.expected
    if job.cron is not None and expected is not None:
        expected += state.skew - skew  # the same wall moment, on the job clock
        if expected + job.grace <= now:
            expected = next_expected(job, now - job.grace, skew)
    return dataclasses.replace(state, expected=expected, skew=skew)


def _tick(job: Job, state: JobState, given: Input, now: float) -> Outcome:
    actions: list[Action] = []
    if state.runs and state.runs[0].deadline <= now:  # one pass however many are due
        due = [run for run in state.runs if run.deadline <= now]
        state, actions = _timeout(job, state, due, now)
    if state.expected is not None and now >= state.expected + job.grace:
        if state.runs:  # a run still going (max_runtime longer than the period) covers it
            state = dataclasses.replace(state, expected=_after_window(job, state.expected, now,
                                                                      state.skew))
        else:
            state, more = _missed(job, state, now)
            actions.extend(more)
    return state, actions


def _timeout(job: Job, state: JobState, due: list[Run], now: float) -> Outcome:
    """The runs in `due` (oldest first) outlived max_runtime: one pass, O(runs)."""
    gone = {id(run) for run in due}
    actions: list[Action] = []
    reason = ""
    for run in due:
        ran = now - run.started
        reason = (f"run {run.run_id} started {format_moment(run.started + state.skew)} has not "
                  f"ended within "
                  f"max_runtime {format_duration(job.max_runtime)}")
        actions.append(event("job_timeout", f"job {job.name} TIMEOUT: {reason}", subject=job.name,
                             subject_kind=JOB, priority=3, run=run.run_id,
                             duration_usec=_usec(ran), max_runtime_usec=_usec(job.max_runtime)))
        actions.append(RunRow(job.name, run.run_id, JobPhase.TIMEOUT, run.started, now, None, ran,
                              "no end reported within max_runtime"))
    last = due[-1]
    finished = Finished(last.run_id, JobPhase.TIMEOUT, now, last.started, None, now - last.started)
    state = dataclasses.replace(
        state, phase=JobPhase.TIMEOUT, since=now, last=finished, reason=reason,
        runs=tuple(r for r in state.runs if id(r) not in gone),
        timed_out=(*state.timed_out, *(r.run_id for r in due[-TIMED_OUT_KEPT:]))[-TIMED_OUT_KEPT:])
    return state, actions


def _missed(job: Job, state: JobState, now: float) -> Outcome:
    assert state.expected is not None
    expected = state.expected
    state = dataclasses.replace(
        state, phase=JobPhase.MISSED, since=now, expected=_after_window(job, expected, now, state.skew),
        reason=f"expected at {format_moment(expected + state.skew, job.timezone)}, no run "
               f"started within "
               f"grace {format_duration(job.grace)}")
    ev = event("job_missed", f"job {job.name} MISSED: {state.reason}", subject=job.name,
               subject_kind=JOB, priority=3, expected=f"{expected + state.skew:.0f}",
               next=f"{state.expected + state.skew:.0f}" if state.expected is not None else None)
    return state, [ev]


def _after_window(job: Job, expected: float, now: float, skew: float) -> float | None:
    """The next expected moment whose window is still open at `now`."""
    if job.cron is not None:
        return next_expected(job, max(expected, now - job.grace), skew)
    assert job.every is not None
    periods = max(1, math.ceil((now - job.grace - expected) / job.every + 1e-9))
    return expected + periods * job.every


def _in_window(job: Job, state: JobState, moment: float) -> bool:
    return state.expected is not None and moment >= state.expected - job.grace


def _satisfied(job: Job, state: JobState, moment: float) -> JobState:
    """`moment` (a start) is the expected run: expect the one after it."""
    if not _in_window(job, state, moment):
        return state
    assert state.expected is not None
    if job.cron is not None:
        return dataclasses.replace(state, expected=next_expected(job, max(moment, state.expected),
                                                                 state.skew))
    return dataclasses.replace(state, expected=next_expected(job, moment))


def _report(job: Job, state: JobState, given: Input, now: float) -> Outcome:
    assert isinstance(given, Report)
    state, actions = _tick(job, state, Tick(), now)  # deadlines that passed come first
    if given.verb == "start":
        state, more = _start(job, state, given, now)
    else:
        state, more = _end(job, state, given, now)
    return state, actions + more


def _start(job: Job, state: JobState, report: Report, now: float) -> Outcome:
    serial = state.serial + 1
    run_id = report.run_id or f"{now:.0f}.{serial}"
    if any(run.run_id == run_id for run in state.runs):
        return state, []  # a repeated start of the same run (a client that retried)
    if len(state.runs) >= job.max_open_runs:  # O(runs) per report: bounded by the cap
        return state, [Refused(f"too many open runs ({len(state.runs)} of job {job.name} started "
                               f"and not ended; max_open_runs {job.max_open_runs})")]
    was = state.phase
    run = Run(run_id, now, now + job.max_runtime, report.source)
    state = _satisfied(job, state, now)
    state = dataclasses.replace(state, phase=JobPhase.RUNNING, since=now, serial=serial,
                                runs=(*state.runs, run), reason="")
    after = f" (it was {was.value})" if was.problem else ""
    ev = event("job_started", f"job {job.name} started, run {run_id}{after}", subject=job.name,
               subject_kind=JOB, priority=6, run=run_id, source=report.source or None)
    return state, [ev, RunRow(job.name, run_id, JobPhase.RUNNING, now)]


def _end(job: Job, state: JobState, report: Report, now: float) -> Outcome:
    result = JobPhase.OK if report.verb == "ok" else JobPhase.FAIL
    run = _pairing(state, report.run_id)
    serial = state.serial
    started: float | None
    if run is not None:
        run_id, started = run.run_id, run.started
        runs = tuple(r for r in state.runs if r is not run)
    else:  # an end whose start was not reported (the seed's clients report only the end)
        if report.run_id is None:
            serial += 1
        run_id = report.run_id or f"{now:.0f}.{serial}"
        started = now - report.duration if report.duration is not None else None
        runs = state.runs
        state = _satisfied(job, state, started if started is not None else now)
    duration = report.duration
    if duration is None and started is not None:
        duration = max(0.0, now - started)
    message = printable(report.message)
    late = run is None and run_id in state.timed_out
    finished = Finished(run_id, result, now, started, report.exit_status, duration, message)
    was = state.phase
    # the outcome shows, even while an overlapping run goes on (it is listed under `running`);
    # the end of a run already reported TIMEOUT that failed is still a timeout
    phase = JobPhase.TIMEOUT if late and result == JobPhase.FAIL else result
    state = dataclasses.replace(state, phase=phase, since=now if phase != was else state.since,
                                runs=runs, last=finished, serial=serial,
                                last_ok=now if result == JobPhase.OK else state.last_ok,
                                reason=message if result == JobPhase.FAIL else "")
    took = f" after {format_duration(duration if duration < 1 else round(duration, 1))}" \
        if duration is not None else ""
    fields = {"run": run_id, "exit_status": report.exit_status, "source": report.source or None,
              "duration_usec": _usec(duration) if duration is not None else None}
    if result == JobPhase.OK:
        again = f" (it was {was.value})" if was.problem else ""
        late_note = " (late: it had been reported TIMEOUT)" if late else ""
        ev = event("job_ok", f"job {job.name} OK{took}, run {run_id}{again}{late_note}",
                   subject=job.name, subject_kind=JOB, priority=5 if was.problem else 6, **fields)
    else:
        status = f" with exit status {report.exit_status}" if report.exit_status is not None else ""
        why = f": {message}" if message else ""
        ev = event("job_failed", f"job {job.name} FAILED{status}{took}, run {run_id}{why}",
                   subject=job.name, subject_kind=JOB, priority=3, **fields)
    row = RunRow(job.name, run_id, result, started, now, report.exit_status, duration,
                 report.message[:OUTPUT_CAP], report.output[-OUTPUT_CAP:])
    return state, [ev, row]


def _pairing(state: JobState, run_id: str | None) -> Run | None:
    if run_id is None:
        return state.runs[0] if state.runs else None
    for run in state.runs:
        if run.run_id == run_id:
            return run
    return None


def _reconfigured(job: Job, state: JobState, given: Input, now: float) -> Outcome:
    assert isinstance(given, Reconfigured)
    old = given.old
    if (old.cron, old.every, old.timezone) != (job.cron, job.every, job.timezone):
        state = dataclasses.replace(state, expected=next_expected(job, now, state.skew))
    if old.max_runtime != job.max_runtime:
        runs = tuple(dataclasses.replace(r, deadline=r.started + job.max_runtime) for r in state.runs)
        state = dataclasses.replace(state, runs=runs)
    return _tick(job, state, Tick(), now)


TABLE: dict[type, Callable[[Job, JobState, Input, float], Outcome]] = {
    Report: _report,
    Tick: _tick,
    Reconfigured: _reconfigured,
}


def printable(text: str, cap: int = MESSAGE_CAP) -> str:
    """A reporter's text made safe for one journal line: control characters escaped, capped."""
    out = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                  for ch in text[: cap * 2])
    return out if len(out) <= cap else out[: cap - 1] + "…"


def _usec(seconds: float) -> int:
    return round(seconds * 1_000_000)
