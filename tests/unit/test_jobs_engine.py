"""One test per transition of the pure job engine; `now` is passed in (wall seconds): no clock."""

from __future__ import annotations

from datetime import datetime, timezone

from zelador.config.model import Job
from zelador.events import Event
from zelador.jobs.engine import (
    JobPhase,
    Reconfigured,
    Report,
    RunRow,
    Tick,
    deadline,
    initial,
    printable,
    step,
)

UTC = timezone.utc
NIGHTLY = Job("fechamento", cron="30 2 * * *", timezone="UTC", max_runtime=1200.0, grace=900.0,
              id=25)
HOURLY = Job("import", every=3600.0, max_runtime=600.0, grace=300.0)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def kinds(actions: list) -> list[str]:
    return [a.kind for a in actions if isinstance(a, Event)]


def rows(actions: list) -> list[RunRow]:
    return [a for a in actions if isinstance(a, RunRow)]


def test_new_job_expects_the_first_scheduled_moment() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    assert state.phase == JobPhase.NEW
    assert state.expected == at("2026-11-24 02:30")
    assert deadline(NIGHTLY, state) == at("2026-11-24 02:45")


def test_new_to_missed_when_no_start_within_grace() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    same, actions = step(NIGHTLY, state, Tick(), at("2026-11-24 02:44:59"))
    assert same.phase == JobPhase.NEW and not actions
    state, actions = step(NIGHTLY, state, Tick(), at("2026-11-24 02:45"))
    assert state.phase == JobPhase.MISSED
    assert kinds(actions) == ["job_missed"]
    assert "02:30" in state.reason and "15m" in state.reason
    assert state.expected == at("2026-11-25 02:30")


def test_missed_to_running_on_a_late_start_says_it_recovers() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Tick(), at("2026-11-24 02:50"))
    state, actions = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 03:00"))
    assert state.phase == JobPhase.RUNNING
    assert kinds(actions) == ["job_started"]
    assert "it was MISSED" in actions[0].message


def test_new_to_running_on_start_in_window_expects_the_next_day() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, actions = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 02:29"))
    assert state.phase == JobPhase.RUNNING
    assert state.expected == at("2026-11-25 02:30")
    assert kinds(actions) == ["job_started"]
    assert rows(actions)[0].state == JobPhase.RUNNING


def test_start_by_hand_outside_the_window_expects_nothing_new() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Report("start", "hand"), at("2026-11-23 14:00"))
    assert state.expected == at("2026-11-24 02:30")
    state, _ = step(NIGHTLY, state, Report("ok", "hand"), at("2026-11-23 14:01"))
    state, actions = step(NIGHTLY, state, Tick(), at("2026-11-24 02:45"))
    assert kinds(actions) == ["job_missed"]


def test_running_to_ok_with_duration_and_exit_status() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 02:30"))
    state, actions = step(NIGHTLY, state, Report("ok", "r1", exit_status=0), at("2026-11-24 02:31"))
    assert state.phase == JobPhase.OK and not state.runs
    assert state.last is not None and state.last.duration == 60.0
    assert state.last_ok == at("2026-11-24 02:31")
    ev = actions[0]
    assert ev.kind == "job_ok" and ev.field("duration_usec") == "60000000"
    assert ev.field("exit_status") == "0" and ev.subject_kind == "job"


def test_running_to_fail_keeps_message_escaped_and_output() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 02:30"))
    report = Report("fail", "r1", exit_status=2, message="disk full\n\x1b[31mred", output="x" * 20000)
    state, actions = step(NIGHTLY, state, report, at("2026-11-24 02:32"))
    assert state.phase == JobPhase.FAIL
    assert kinds(actions) == ["job_failed"]
    assert "\n" not in actions[0].message and "\x1b" not in actions[0].message
    assert "exit status 2" in actions[0].message and actions[0].priority == 3
    assert len(rows(actions)[0].output) == 10 * 1024


def test_running_to_timeout_after_max_runtime() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 02:30"))
    assert deadline(NIGHTLY, state) == at("2026-11-24 02:50")
    state, actions = step(NIGHTLY, state, Tick(), at("2026-11-24 02:50"))
    assert state.phase == JobPhase.TIMEOUT and not state.runs
    assert kinds(actions) == ["job_timeout"]
    assert rows(actions)[0].state == JobPhase.TIMEOUT


def test_a_late_fail_of_a_timed_out_run_stays_timeout_a_late_ok_recovers() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 02:30"))
    timed_out, _ = step(NIGHTLY, state, Tick(), at("2026-11-24 02:50"))
    state, actions = step(NIGHTLY, timed_out, Report("fail", "r1", exit_status=143),
                          at("2026-11-24 02:51"))
    assert state.phase == JobPhase.TIMEOUT and kinds(actions) == ["job_failed"]
    state, actions = step(NIGHTLY, timed_out, Report("ok", "r1"), at("2026-11-24 02:51"))
    assert state.phase == JobPhase.OK and "late" in actions[0].message


def test_overlapping_runs_are_paired_by_run_id() -> None:
    job = Job("sync", every=60.0, max_runtime=600.0, grace=30.0)
    state = initial(job, 0.0)
    state, _ = step(job, state, Report("start", "a"), 60.0)
    state, _ = step(job, state, Report("start", "b"), 120.0)
    state, actions = step(job, state, Report("fail", "a", exit_status=1), 125.0)
    assert state.phase == JobPhase.FAIL  # what happened last; b still runs, and is listed
    assert [r.run_id for r in state.runs] == ["b"]
    assert rows(actions)[0].run_id == "a" and rows(actions)[0].duration == 65.0
    state, actions = step(job, state, Report("ok", "b"), 130.0)
    assert state.phase == JobPhase.OK and rows(actions)[0].duration == 10.0


def test_an_end_without_run_id_closes_the_oldest_open_run() -> None:
    state = initial(HOURLY, 0.0)
    state, _ = step(HOURLY, state, Report("start"), 3600.0)
    state, _ = step(HOURLY, state, Report("start"), 3610.0)
    state, actions = step(HOURLY, state, Report("ok"), 3620.0)
    assert rows(actions)[0].run_id == "3600.1" and [r.run_id for r in state.runs] == ["3610.2"]


def test_an_end_only_report_counts_as_the_expected_run() -> None:
    """The seed's clients send only `state=OK` at the end."""
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, actions = step(NIGHTLY, state, Report("ok"), at("2026-11-24 02:40"))
    assert state.phase == JobPhase.OK and kinds(actions) == ["job_ok"]
    assert state.expected == at("2026-11-25 02:30")
    assert rows(actions)[0].started is None


def test_a_repeated_start_of_the_same_run_is_ignored() -> None:
    state = initial(HOURLY, 0.0)
    state, _ = step(HOURLY, state, Report("start", "x"), 3600.0)
    again, actions = step(HOURLY, state, Report("start", "x"), 3601.0)
    assert again == state and actions == []


def test_interval_job_counts_from_the_last_start() -> None:
    state = initial(HOURLY, 0.0)
    assert state.expected == 3600.0
    state, _ = step(HOURLY, state, Report("start"), 3400.0)  # within grace before it
    assert state.expected == 7000.0


def test_a_run_still_going_covers_the_next_expected_moment() -> None:
    job = Job("slow", every=60.0, max_runtime=600.0, grace=10.0)
    state = initial(job, 0.0)
    state, _ = step(job, state, Report("start", "a"), 60.0)
    state, actions = step(job, state, Tick(), 130.0)
    assert state.phase == JobPhase.RUNNING and actions == []
    assert state.expected is not None and state.expected > 130.0


def test_missed_after_a_long_absence_is_one_event() -> None:
    state = initial(NIGHTLY, at("2026-11-01 12:00"))
    state, actions = step(NIGHTLY, state, Tick(), at("2026-11-23 12:00"))
    assert kinds(actions) == ["job_missed"]
    assert state.expected == at("2026-11-24 02:30")


def test_reconfigured_schedule_expects_from_now() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    hourly = Job("fechamento", cron="0 * * * *", timezone="UTC", grace=300.0)
    state, _ = step(hourly, state, Reconfigured(NIGHTLY), at("2026-11-23 12:10"))
    assert state.expected == at("2026-11-23 13:00")


def test_reconfigured_max_runtime_moves_open_deadlines() -> None:
    state = initial(NIGHTLY, at("2026-11-23 12:00"))
    state, _ = step(NIGHTLY, state, Report("start", "r"), at("2026-11-24 02:30"))
    longer = Job("fechamento", cron="30 2 * * *", timezone="UTC", max_runtime=3600.0, grace=900.0)
    state, _ = step(longer, state, Reconfigured(NIGHTLY), at("2026-11-24 02:35"))
    assert state.runs[0].deadline == at("2026-11-24 03:30")


def test_printable_escapes_control_characters_and_caps() -> None:
    assert printable("a\nb\x00") == "a\\nb\\x00"
    assert len(printable("é" * 1000)) == 200


def test_random_reports_and_ticks_keep_the_invariants() -> None:
    """Random starts, ends (with and without run ids), ticks and clock jumps; after every step:
    no open run is past its deadline once ticked, the expected moment is never overdue after a
    tick, an open run means RUNNING or a result that came after it, and nothing raises."""
    import os
    import random

    seed = int(os.environ.get("ZELADOR_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    for job in (NIGHTLY, HOURLY, Job("fast", every=60.0, max_runtime=90.0, grace=10.0),
                Job("prague", cron="*/30 1-3 * * *", timezone="Europe/Prague", max_runtime=600.0,
                    grace=120.0)):
        now = at("2026-10-24 20:00")
        state = initial(job, now)
        open_ids: list[str] = []
        for _ in range(3000):
            now += rng.choice((1.0, 30.0, 300.0, 3600.0, 7 * 3600.0))
            roll = rng.random()
            if roll < 0.3:
                run_id = rng.choice((None, f"r{rng.randrange(50)}"))
                given: object = Report("start", run_id)
            elif roll < 0.6:
                run_id = rng.choice((None, *open_ids[-3:])) if open_ids else None
                given = Report(rng.choice(("ok", "fail")), run_id, rng.choice((None, 0, 1)))
            else:
                given = Tick()
            was_open = {r.run_id for r in state.runs}
            state, actions = step(job, state, given, now)  # type: ignore[arg-type]
            open_ids = [r.run_id for r in state.runs]
            assert all(isinstance(a, (Event, RunRow)) for a in actions), seed
            if isinstance(given, Tick):
                assert all(r.deadline > now for r in state.runs), seed
                assert state.expected is None or state.expected + job.grace > now, seed
            if isinstance(given, Report) and given.verb == "start" and given.run_id not in was_open:
                assert state.phase == JobPhase.RUNNING, seed  # a new start (not a repeated one)
            assert len({r.run_id for r in state.runs}) == len(state.runs), seed


def test_one_start_more_than_max_open_runs_is_refused_and_changes_nothing() -> None:
    from zelador.jobs.engine import Refused

    job = Job("capped", every=3600.0, max_runtime=600.0, grace=300.0, max_open_runs=3)
    state = initial(job, 1000.0)
    for i in range(3):
        state, _ = step(job, state, Report("start", f"r{i}"), 1001.0 + i)
    same, actions = step(job, state, Report("start", "r3"), 1005.0)
    assert same is state and len(actions) == 1 and isinstance(actions[0], Refused)
    assert "too many open runs" in actions[0].reason
    again, actions = step(job, state, Report("start", "r1"), 1006.0)  # a retried start: no-op
    assert again is state and not actions
    state, _ = step(job, state, Report("ok", "r0"), 1007.0)
    state, actions = step(job, state, Report("start", "r3"), 1008.0)
    assert kinds(actions) == ["job_started"] and len(state.runs) == 3


def test_many_due_runs_time_out_in_one_pass() -> None:
    import dataclasses as dc

    from zelador.jobs.engine import Run

    job = Job("flooded", every=3600.0, max_runtime=600.0, grace=300.0, max_open_runs=1000)
    runs = tuple(Run(f"r{i}", 1000.0 + i * 0.001, 1600.0 + i * 0.001) for i in range(20_000))
    state = dc.replace(initial(job, 1000.0), runs=runs, expected=None)
    assert deadline(job, state) == 1600.0
    state, actions = step(job, state, Tick(), 1700.0)
    assert not state.runs and state.phase == JobPhase.TIMEOUT
    assert kinds(actions).count("job_timeout") == 20_000 and len(rows(actions)) == 20_000
    assert state.last is not None and state.last.run_id == "r19999"
    assert len(state.timed_out) == 16 and state.timed_out[-1] == "r19999"


# --- clock steps: `now` is the job clock (boot clock), `skew` the wall clock ahead of it -------

HOUR, YEAR = 3600.0, 365 * 86400.0


def test_a_step_of_the_wall_clock_neither_fires_nor_delays_a_timeout() -> None:
    job = Job("sync", every=HOUR, max_runtime=600.0, grace=300.0)
    for step_by in (HOUR, -HOUR, YEAR, -YEAR):
        state = initial(job, 1000.0)
        state, _ = step(job, state, Report("start", "r1"), 1000.0)
        state, actions = step(job, state, Tick(), 1002.0, skew=step_by)  # stepped 2 s in
        assert not actions and state.phase == JobPhase.RUNNING, step_by
        assert deadline(job, state) == 1600.0  # on the job clock: unmoved
        state, actions = step(job, state, Tick(), 1599.0, skew=step_by)
        assert not actions, step_by
        state, actions = step(job, state, Tick(), 1600.0, skew=step_by)
        assert kinds(actions) == ["job_timeout"], step_by
        assert rows(actions)[0].duration == 600.0  # not 600 s plus the step


def test_a_step_does_not_make_an_interval_job_missed() -> None:
    job = Job("sync", every=HOUR, max_runtime=600.0, grace=300.0)
    state = initial(job, 1000.0)
    state, _ = step(job, state, Report("ok", "r1"), 1000.0)
    for skew in (HOUR, 2 * HOUR, YEAR, -YEAR):
        state, actions = step(job, state, Tick(), 1010.0, skew=skew)
        assert not actions and state.phase == JobPhase.OK
    assert state.expected == 1000.0 + HOUR


def test_cron_moments_follow_the_wall_clock_and_a_window_stepped_over_is_skipped() -> None:
    now = at("2026-11-24 02:00")  # job clock == wall clock until the step
    state = initial(NIGHTLY, now)
    assert state.expected == at("2026-11-24 02:30")
    # +1 h: the wall clock says 03:00; the 02:30 window (to 02:45) was jumped over: skipped
    state, actions = step(NIGHTLY, state, Tick(), now + 1, skew=HOUR)
    assert not actions and state.phase == JobPhase.NEW
    assert state.expected is not None and state.expected + HOUR == at("2026-11-25 02:30")
    # a step of 10 minutes: the same wall moment, so MISSED at 02:45 on the wall clock
    state = initial(NIGHTLY, now)
    state, actions = step(NIGHTLY, state, Tick(), now + 1, skew=600.0)
    assert not actions and state.expected == at("2026-11-24 02:30") - 600.0
    state, actions = step(NIGHTLY, state, Tick(), at("2026-11-24 02:45") - 600.0, skew=600.0)
    assert kinds(actions) == ["job_missed"] and "02:30" in state.reason
    # a run the timer started at 02:30 on the stepped wall clock is the expected run
    state = initial(NIGHTLY, now)
    state, actions = step(NIGHTLY, state, Report("start", "r1"), at("2026-11-24 02:30") - 600.0,
                          skew=600.0)
    assert state.expected is not None and state.expected + 600.0 == at("2026-11-25 02:30")


def test_states_move_onto_another_clock_whole() -> None:
    from zelador.jobs.engine import shifted

    state = initial(HOURLY, 1000.0)
    state, _ = step(HOURLY, state, Report("start", "r1"), 1000.0)
    moved = shifted(state, 50.0)
    assert moved.runs[0].started == 1050.0 and moved.runs[0].deadline == 1650.0
    assert moved.expected == state.expected + 50.0 and moved.since == 1050.0
    assert moved.skew == -50.0
