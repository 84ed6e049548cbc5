"""What survives a restart of zelador: snapshot and restore are pure; save/load are atomic."""

from __future__ import annotations

import json

import pytest

from zelador.config.model import Match, Program
from zelador.programs.engine import step
from zelador.programs.states import Instance, Observed, PeersRestart, Phase, ProgramState
from zelador.store import state
from zelador.store.state import StateFileError, load, restore, save, snapshot

A = Instance(100, 1000.0)


def test_counters_fatal_timer_and_stop_come_back():
    states = {
        "comunicador": ProgramState("comunicador", Phase.FATAL, deadline=1300.0, restarts=7,
                                    attempts=12, last_exit="pid 9 exited with status 1",
                                    reason="gave up"),
        "monitor": ProgramState("monitor", Phase.STOPPED, restarts=2),
    }
    data = snapshot(states, now=1000.0, wall=50_000.0)
    fresh = {n: ProgramState(n) for n in states}
    back = restore(json.loads(json.dumps(data)), fresh, now=5.0, wall=50_100.0)  # 100 s later
    com, mon = back["comunicador"], back["monitor"]
    assert (com.restarts, com.attempts, com.last_exit) == (7, 12, "pid 9 exited with status 1")
    assert com.phase == Phase.FATAL and com.deadline == pytest.approx(5.0 + 200.0)
    assert mon.phase == Phase.STOPPED and mon.restarts == 2


def test_a_clock_step_cannot_stretch_a_fatal_timer():
    data = snapshot({"a": ProgramState("a", Phase.FATAL, deadline=1300.0)}, 1000.0, 50_000.0)
    back = restore(data, {"a": ProgramState("a")}, now=0.0, wall=10.0)  # the clock went back
    assert back["a"].deadline == pytest.approx(300.0)


def test_a_pending_part_of_restart_is_carried_out_after_our_restart():
    prog = Program("comunicador", Match(name="C"), ("/bin/true",))
    data = snapshot({"comunicador": ProgramState("comunicador", Phase.STARTING, restarting=True)},
                    1.0, 100.0)
    state = restore(data, {"comunicador": ProgramState("comunicador")}, 2.0, 101.0)["comunicador"]
    state, actions = step(prog, state, Observed(A), 2.0)
    assert state.phase == Phase.RUNNING and PeersRestart("comunicador") in actions


def test_programs_no_longer_configured_are_dropped():
    data = snapshot({"gone": ProgramState("gone", restarts=3)}, 0.0, 0.0)
    assert restore(data, {"a": ProgramState("a")}, 0.0, 0.0) == {"a": ProgramState("a")}


def test_save_is_atomic_and_load_refuses_garbage(tmp_path):
    path = tmp_path / "state" / "state.json"
    save(str(path), {"version": 1, "saved_at": 0.0, "programs": {}})
    assert load(str(path)) == {"version": 1, "saved_at": 0.0, "programs": {}}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp file left
    path.write_text("{half a fil")
    with pytest.raises(StateFileError):
        load(str(path))
    assert load(str(tmp_path / "none.json")) is None
    with pytest.raises(StateFileError):
        restore({"version": 99, "programs": {}}, {}, 0.0, 0.0)


def test_a_start_in_flight_is_waited_for_not_launched_again():
    prog = Program("late", Match(name="L"), ("/bin/true",), start_timeout=30.0)
    data = snapshot({"late": ProgramState("late", Phase.STARTING, deadline=1030.0)}, 1000.0, 500.0)
    state = restore(data, {"late": ProgramState("late")}, 7.0, 510.0)["late"]
    assert state.phase == Phase.STARTING and state.deadline == pytest.approx(7.0 + 20.0)
    state, actions = step(prog, state, Observed(None), 7.1)  # not exec'd yet: wait, no launch
    assert state.phase == Phase.STARTING and actions == []
    state, actions = step(prog, state, Observed(A), 8.5)  # the wrapper became the program
    assert state.phase == Phase.RUNNING and state.instance == A


def test_job_states_survive_a_save_and_load_whole(tmp_path):
    from zelador.config.model import Job
    from zelador.jobs.engine import Report, Tick, initial
    from zelador.jobs.engine import step as job_step

    job = Job("fechamento", cron="30 2 * * *", timezone="UTC", max_runtime=60.0, grace=60.0)
    now = 1_795_000_000.0
    running, _ = job_step(job, initial(job, now), Report("start", "r1", source="tcp"), now)
    failed, _ = job_step(job, running, Report("fail", "r1", exit_status=2, message="x"), now + 5)
    import dataclasses

    states = {"fechamento": failed, "backup": dataclasses.replace(running, name="backup")}
    path = str(tmp_path / "state.json")
    data = state.snapshot({}, 0.0, now)
    data["jobs"] = state.jobs_snapshot(states)
    state.save(path, data)
    fresh = {"fechamento": initial(job, now + 10), "backup": initial(job, now + 10)}
    back = state.jobs_restore(state.load(path), fresh)
    assert back == states
    # the restored run still times out at its own deadline
    timed_out, actions = job_step(job, back["backup"], Tick(), now + 60)
    assert timed_out.phase.value == "TIMEOUT" and actions


def test_a_garbled_job_entry_is_a_state_file_error():
    from zelador.config.model import Job
    from zelador.jobs.engine import initial

    job = Job("x", every=60.0)
    with pytest.raises(state.StateFileError, match=r"jobs\.x"):
        state.jobs_restore({"jobs": {"x": {"phase": "SLEEPY"}}}, {"x": initial(job, 0.0)})


def test_a_schedule_edited_while_zelador_was_stopped_is_worked_out_again():
    import dataclasses

    from zelador.config.model import Job
    from zelador.jobs.engine import Reconfigured, Report, initial
    from zelador.jobs.engine import step as job_step

    old = Job("backup", cron="0 3 * * *", timezone="UTC", max_runtime=600.0)
    now = 1_795_000_000.0
    running, _ = job_step(old, initial(old, now), Report("start", "r1"), now)
    data = {"jobs": state.jobs_snapshot({"backup": running}, {"backup": old})}
    new = dataclasses.replace(old, cron="0 5 * * *", max_runtime=3600.0)
    assert state.saved_job_settings(data, {"backup": new}) == {"backup": old}
    assert state.saved_job_settings(data, {"backup": old}) == {}
    restored = state.jobs_restore(data, {"backup": initial(new, now + 5)})["backup"]
    assert restored.runs[0].deadline == now + 600.0  # still the old settings' deadline ...
    fixed, _ = job_step(new, restored, Reconfigured(old), now + 5)
    assert fixed.runs[0].deadline == now + 3600.0  # ... until reconciled with the new ones
    assert fixed.expected is not None and fixed.expected % 86400 == 5 * 3600
