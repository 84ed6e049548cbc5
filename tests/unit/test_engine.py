"""One test per transition of the pure engine, named after it. `now` is passed in: no clock."""

from __future__ import annotations

from zelador.config.model import Health, Match, Probe, Program, Restart, Stop
from zelador.events import Event
from zelador.programs.engine import KILL_GRACE, step
from zelador.programs.states import (
    Command,
    EarlyExit,
    Exited,
    HealthPassed,
    Instance,
    KillScript,
    Launch,
    LaunchFailed,
    Observed,
    PeerRestarted,
    PeersRestart,
    Phase,
    ProgramState,
    Reloaded,
    ScriptExited,
    StopInstance,
    Tick,
)

PROG = Program(name="comunicador", match=Match(name="Comunicador"), start=("/bin/true",),
               start_timeout=30.0, stop=Stop(timeout=10.0),
               restart=Restart(delay=0.0, max_delay=300.0, stable=10.0, burst=5, window=120.0,
                               retry_every=600.0))
A = Instance(100, 1000.0)
B = Instance(200, 2000.0)


def kinds(actions: list) -> list[str]:
    return [a.kind for a in actions if isinstance(a, Event)]


def running(at: float = 0.0, **changes: object) -> ProgramState:
    return ProgramState("comunicador", phase=Phase.RUNNING, instance=A, since=at, **changes)


def starting(at: float = 0.0, **changes: object) -> ProgramState:
    fields = {"script_running": True, "deadline": at + PROG.start_timeout, "starts": (at,)}
    fields.update(changes)
    return ProgramState("comunicador", phase=Phase.STARTING, since=at, **fields)


def test_unknown_to_running_when_already_running():
    state, actions = step(PROG, ProgramState("comunicador"), Observed(A), 0.0)
    assert state.phase == Phase.RUNNING and state.instance == A
    assert kinds(actions) == ["found"] and not any(isinstance(a, Launch) for a in actions)


def test_a_process_found_at_our_start_that_dies_soon_after_is_restarted_at_once():
    """Found running at zelador's (re)start, it has run a day: dying 2 s later is not a failed
    start (no backoff; found by the Debian 12 system test after `systemctl restart zelador`)."""
    state, _ = step(PROG, ProgramState("comunicador"), Observed(A, age=86400.0), 100.0)
    assert state.since == 100.0 - 86400.0
    state, actions = step(PROG, state, Exited(A, None, 9), 102.0)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions
    assert state.failures == 0 and "after 1d" in state.last_exit


def test_unknown_to_starting_when_not_running():
    state, actions = step(PROG, ProgramState("comunicador"), Observed(None), 0.0)
    assert state.phase == Phase.STARTING and state.restarts == 0
    assert Launch("comunicador") in actions and kinds(actions) == ["starting"]


def test_unknown_waits_for_after_dependency():
    state, actions = step(PROG, ProgramState("comunicador"), Observed(None), 0.0, ("other",))
    assert state.phase == Phase.BACKOFF and "waiting for other" in state.reason
    assert not any(isinstance(a, Launch) for a in actions)


def test_starting_to_running_when_script_exits_after_process_seen():
    state, _ = step(PROG, starting(), Observed(A), 0.1)
    assert state.phase == Phase.STARTING  # the script has not exited yet
    state, actions = step(PROG, state, ScriptExited(0), 0.2)
    assert state.phase == Phase.RUNNING and kinds(actions) == ["started"]


def test_starting_to_running_when_process_seen_after_script_exits():
    state, _ = step(PROG, starting(), ScriptExited(0), 0.1)
    state, _actions = step(PROG, state, Observed(A), 0.2)
    assert state.phase == Phase.RUNNING and state.instance == A


def test_starting_nonzero_script_status_with_process_is_running_with_warning():
    state, _ = step(PROG, starting(), Observed(A), 0.1)
    state, actions = step(PROG, state, ScriptExited(1), 0.2)
    assert state.phase == Phase.RUNNING
    assert "status 1" in actions[0].message and actions[0].priority == 4


def test_starting_to_backoff_at_once_when_script_fails_and_nothing_runs():
    state, actions = step(PROG, starting(), ScriptExited(255, "'/run/sshd' missing"), 0.1)
    assert state.phase == Phase.BACKOFF and kinds(actions) == ["start_failed"]
    assert KillScript("comunicador") in actions  # what it started before failing goes too
    events = [a for a in actions if isinstance(a, Event)]
    assert "status 255" in events[0].message and "'/run/sshd' missing" in events[0].message


def test_starting_to_backoff_when_the_program_died_before_any_look():
    state, actions = step(PROG, starting(), EarlyExit(321, "exited with status 3"), 0.01)
    assert state.phase == Phase.BACKOFF and KillScript("comunicador") in actions
    assert "pid 321 exited with status 3 right after it started" in actions[-1].message


def test_starting_timeout_with_a_hung_script_adopts_the_program_that_appeared():
    state, _ = step(PROG, starting(), Observed(A), 1.0)
    state, actions = step(PROG, state, Tick(), 30.0)
    assert state.phase == Phase.RUNNING and state.instance == A
    assert KillScript("comunicador", spare=A) in actions


def test_starting_to_fatal_quietly_rechecked_on_a_host_problem():
    problem = "start script '/opt/x.sh' does not exist"
    state, actions = step(PROG, starting(), LaunchFailed(problem, host=True), 0.0)
    assert state.phase == Phase.FATAL and kinds(actions) == ["host_problem"]
    assert state.deadline is not None and state.deadline <= 5.0
    state, actions = step(PROG, state, Tick(), 5.0)  # re-check: launch, no event
    assert Launch("comunicador") in actions and kinds(actions) == []
    state, actions = step(PROG, state, LaunchFailed(problem, host=True), 5.0)
    assert state.phase == Phase.FATAL and actions == []  # the same problem is not news


def test_fatal_host_problem_rechecked_at_once_on_reload():
    state, _ = step(PROG, starting(), LaunchFailed("x", host=True), 0.0)
    state, actions = step(PROG, state, Reloaded(), 1.0)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_duplicate_is_stopped_by_signal_with_kill_after_never_the_stop_command():
    prog = Program(name="comunicador", match=Match(name="C"), start=("/bin/true",),
                   duplicates="stop", stop=Stop(timeout=7.0, command=("/bin/stop-all",)))
    _, actions = step(prog, running(), Observed(A, (B,)), 1.0)
    stop = next(a for a in actions if isinstance(a, StopInstance))
    assert stop == StopInstance("comunicador", B, False, duplicate=True, kill_after=7.0, tree=True)


def test_running_adopts_the_successor_the_look_found_after_an_exit():
    state, actions = step(PROG, running(), Exited(A, exit_signal=9, successor=B), 60.0)
    assert state.phase == Phase.RUNNING and state.instance == B
    assert not any(isinstance(a, Launch) for a in actions)
    assert kinds(actions)[:2] == ["exited", "found"] and "SIGKILL" in actions[0].message


def test_a_dead_instance_is_never_adopted_again():
    state, _ = step(PROG, running(), Exited(A), 60.0)
    state, _ = step(PROG, state, Observed(A), 60.1)  # a lingering zombie in a stale cache
    assert state.instance is None and state.phase == Phase.STARTING


def test_starting_to_backoff_when_script_hangs_past_timeout():
    state, actions = step(PROG, starting(), Tick(), 30.0)
    assert state.phase == Phase.BACKOFF and state.failures == 1
    assert KillScript("comunicador") in actions and kinds(actions) == ["start_failed"]
    assert state.deadline == 30.0 + 1.0  # first failure backs off 1s


def test_starting_to_backoff_when_no_process_appears():
    state, _ = step(PROG, starting(), ScriptExited(0), 0.1)
    state, actions = step(PROG, state, Tick(), 30.0)
    assert state.phase == Phase.BACKOFF
    assert "no process matching name='Comunicador' appeared" in actions[1].message
    assert actions[0] == KillScript("comunicador")  # what the start left is stopped


def test_starting_tick_before_deadline_does_nothing():
    state = starting()
    assert step(PROG, state, Tick(), 29.9) == (state, [])


def test_starting_to_backoff_when_launch_fails():
    state, actions = step(PROG, starting(), LaunchFailed("start script '/x' does not exist"), 0.0)
    assert state.phase == Phase.BACKOFF and "does not exist" in actions[0].message


def test_starting_to_fatal_when_burst_exceeded():
    state = starting(starts=(1.0, 2.0, 3.0, 4.0, 5.0))
    state, actions = step(PROG, state, LaunchFailed("boom"), 6.0)
    assert state.phase == Phase.FATAL and state.deadline == 6.0 + 600.0
    assert kinds(actions) == ["gave_up"]


def test_starting_stop_command_kills_script_and_stops():
    state, actions = step(PROG, starting(), Command("stop"), 1.0)
    assert state.phase == Phase.STOPPED and KillScript("comunicador") in actions


def test_running_to_starting_at_once_after_exit_of_stable_process():
    state, actions = step(PROG, running(at=0.0), Exited(A), 60.0)
    assert state.phase == Phase.STARTING and state.attempts == 1 and state.failures == 0
    assert state.restarts == 0  # counted once it is back
    assert kinds(actions) == ["exited", "restarting"] and Launch("comunicador") in actions


def test_running_to_backoff_after_exit_of_young_process():
    state, actions = step(PROG, running(at=0.0), Exited(A), 2.0)
    assert state.phase == Phase.BACKOFF and state.failures == 1 and state.deadline == 3.0
    assert kinds(actions) == ["exited", "backoff"]


def test_running_ignores_exit_of_another_instance():
    state = running()
    new, actions = step(PROG, state, Exited(B), 5.0)
    assert (new.phase, new.instance, actions) == (Phase.RUNNING, A, [])
    assert B in new.dead  # and never adopted later


def test_running_exited_found_by_scan_restarts():
    state, actions = step(PROG, running(), Observed(None), 60.0)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_running_adopts_a_replacement_found_by_scan_without_launching():
    state, actions = step(PROG, running(), Observed(B), 60.0)
    assert state.phase == Phase.RUNNING and state.instance == B
    assert not any(isinstance(a, Launch) for a in actions)
    assert PeersRestart("comunicador") in actions


def test_running_to_stopping_on_restart_command():
    state, actions = step(PROG, running(), Command("restart"), 5.0)
    assert state.phase == Phase.STOPPING and state.then_start
    assert StopInstance("comunicador", A, False, tree=True) in actions and state.deadline == 15.0


def test_running_to_stopping_on_peer_restarted():
    state, actions = step(PROG, running(), PeerRestarted("other"), 5.0)
    assert state.phase == Phase.STOPPING and state.then_start
    assert "because other was restarted" in actions[0].message


def test_stopping_to_starting_when_gone_for_restart():
    state, _ = step(PROG, running(), Command("restart"), 5.0)
    state, actions = step(PROG, state, Exited(A), 5.1)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_stopping_to_stopped_when_gone_for_stop():
    state, _ = step(PROG, running(), Command("stop"), 5.0)
    state, actions = step(PROG, state, Exited(A), 5.1)
    assert state.phase == Phase.STOPPED and kinds(actions) == ["stopped"]


def test_stopping_escalates_to_sigkill_after_timeout():
    state, _ = step(PROG, running(), Command("stop"), 5.0)
    state, actions = step(PROG, state, Tick(), 15.0)
    assert StopInstance("comunicador", A, True, tree=True) in actions and state.forced
    state, actions = step(PROG, state, Tick(), 15.0 + KILL_GRACE)
    assert kinds(actions) == ["stop_failed"] and state.deadline is None


def test_stopping_adopts_instance_started_by_someone_else():
    state, _ = step(PROG, running(), Command("restart"), 5.0)
    state, actions = step(PROG, state, Observed(B), 5.1)
    assert state.phase == Phase.RUNNING and state.instance == B
    assert not any(isinstance(a, Launch) for a in actions)


def test_backoff_to_starting_after_delay():
    state, _ = step(PROG, running(at=0.0), Exited(A), 2.0)
    assert step(PROG, state, Tick(), 2.5)[0].phase == Phase.BACKOFF
    state, _actions = step(PROG, state, Tick(), 3.0)
    assert state.phase == Phase.STARTING and state.attempts == 1


def test_backoff_adopts_process_that_came_back():
    state, _ = step(PROG, running(at=0.0), Exited(A), 2.0)
    state, actions = step(PROG, state, Observed(B), 2.5)
    assert state.phase == Phase.RUNNING and kinds(actions) == ["found"]


def test_backoff_to_starting_on_start_command_resets_failures():
    state, _ = step(PROG, running(at=0.0), Exited(A), 2.0)
    state, _actions = step(PROG, state, Command("start"), 2.1)
    assert state.phase == Phase.STARTING and state.failures == 0


def test_backoff_delays_double_with_consecutive_failures():
    state = starting(at=0.0)
    delays = []
    for n in range(4):
        state, _ = step(PROG, state, LaunchFailed("boom"), float(n * 100))
        delays.append(state.deadline - n * 100)
        state = starting(at=n * 100 + 50.0, failures=state.failures)
    assert delays == [1.0, 2.0, 4.0, 8.0]


def test_fatal_to_starting_on_slow_retry_and_back_to_fatal_on_failure():
    state, _ = step(PROG, starting(starts=(1.0, 2.0, 3.0, 4.0, 5.0)), LaunchFailed("boom"), 6.0)
    state, actions = step(PROG, state, Tick(), 606.0)
    assert state.phase == Phase.STARTING and state.retrying and kinds(actions) == ["restarting"]
    state, actions = step(PROG, state, LaunchFailed("boom"), 607.0)
    assert state.phase == Phase.FATAL and state.deadline == 607.0 + 600.0


def test_fatal_to_running_when_slow_retry_succeeds():
    state, _ = step(PROG, starting(starts=(1.0, 2.0, 3.0, 4.0, 5.0)), LaunchFailed("boom"), 6.0)
    state, _ = step(PROG, state, Tick(), 606.0)
    state, _ = step(PROG, state, ScriptExited(0), 606.1)
    state, _ = step(PROG, state, Observed(A), 606.2)
    assert state.phase == Phase.RUNNING and not state.retrying


def test_fatal_restart_command_tries_at_once():
    state, _ = step(PROG, starting(starts=(1.0, 2.0, 3.0, 4.0, 5.0)), LaunchFailed("boom"), 6.0)
    state, actions = step(PROG, state, Command("restart"), 7.0)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_stopped_ignores_exits_and_start_command_launches():
    state = ProgramState("comunicador", phase=Phase.STOPPED)
    state, actions = step(PROG, state, Observed(None), 1.0)
    assert state.phase == Phase.STOPPED and actions == []
    state, actions = step(PROG, state, Command("start"), 2.0)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_stopped_start_command_adopts_a_process_started_by_hand():
    state, _ = step(PROG, ProgramState("comunicador", phase=Phase.STOPPED), Observed(A), 1.0)
    state, actions = step(PROG, state, Command("start"), 2.0)
    assert state.phase == Phase.RUNNING and not any(isinstance(a, Launch) for a in actions)


def test_duplicate_reported_once_and_stopped_when_configured():
    prog = PROG.__class__(**{**PROG.__dict__, "duplicates": "stop"})
    state, actions = step(prog, running(), Observed(A, (B,)), 1.0)
    assert kinds(actions) == ["duplicate"]
    assert StopInstance("comunicador", B, False, duplicate=True, kill_after=10.0,
                        tree=True) in actions
    state, actions = step(prog, state, Observed(A, (B,)), 2.0)
    assert actions == []


def test_duplicate_reported_but_left_running_by_default():
    _, actions = step(PROG, running(), Observed(A, (B,)), 1.0)
    assert kinds(actions) == ["duplicate"]
    assert not any(isinstance(a, StopInstance) for a in actions)


def test_started_after_restart_asks_part_of_peers_to_follow():
    state, _ = step(PROG, running(at=0.0), Exited(A), 60.0)
    state, _ = step(PROG, state, ScriptExited(0), 60.1)
    state, actions = step(PROG, state, Observed(B), 60.2)
    assert PeersRestart("comunicador") in actions


def test_first_start_does_not_restart_part_of_peers():
    state, _ = step(PROG, ProgramState("comunicador"), Observed(None), 0.0)
    state, _ = step(PROG, state, ScriptExited(0), 0.1)
    _, actions = step(PROG, state, Observed(A), 0.2)
    assert PeersRestart("comunicador") not in actions


FAMILY = (Instance(101, 1001.0), Instance(102, 1002.0))


def test_running_exit_with_leftover_family_stops_it_before_restarting():
    state, actions = step(PROG, running(), Exited(A, exit_signal=9, leftovers=FAMILY), 60.0)
    assert state.phase == Phase.STOPPING and state.leftovers == FAMILY
    assert not any(isinstance(a, Launch) for a in actions)
    stops = [a for a in actions if isinstance(a, StopInstance)]
    assert [s.instance for s in stops] == list(FAMILY) and all(s.duplicate for s in stops)
    state, actions = step(PROG, state, Exited(FAMILY[0]), 60.1)
    assert state.phase == Phase.STOPPING and actions == []
    state, actions = step(PROG, state, Exited(FAMILY[1]), 60.2)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_leftovers_that_ignore_their_signal_get_sigkill_then_the_restart_goes_on():
    state, _ = step(PROG, running(), Exited(A, leftovers=FAMILY), 60.0)
    state, actions = step(PROG, state, Tick(), 60.0 + PROG.stop.timeout)
    assert [a.force for a in actions if isinstance(a, StopInstance)] == [True, True]
    state, actions = step(PROG, state, Tick(), 60.0 + PROG.stop.timeout + KILL_GRACE)
    assert state.phase == Phase.STARTING and Launch("comunicador") in actions


def test_a_leftover_is_never_adopted_as_the_instance():
    state, _ = step(PROG, running(), Exited(A, leftovers=FAMILY), 60.0)
    state, _ = step(PROG, state, Observed(FAMILY[0]), 60.1)
    assert state.instance is None


def test_family_keep_leaves_leftovers_and_restarts_at_once():
    keep = Program(name="comunicador", match=Match(name="C"), start=("/bin/true",), family="keep")
    state, actions = step(keep, running(), Exited(A, leftovers=FAMILY), 60.0)
    assert state.phase == Phase.STARTING and not any(isinstance(a, StopInstance) for a in actions)
    assert set(FAMILY) <= set(state.dead)


def test_running_follows_a_pidfile_that_names_a_new_master():
    web = Program(name="web", match=Match(pidfile="/run/nginx.pid"), start=("/usr/sbin/nginx",))
    state = ProgramState("web", phase=Phase.RUNNING, instance=A)
    state, actions = step(web, state, Observed(None), 1.0)  # pidfile rewritten: not a death
    assert state.instance == A and actions == []
    state, actions = step(web, state, Observed(B), 1.1)
    assert state.phase == Phase.RUNNING and state.instance == B
    assert kinds(actions) == ["found"] and "following it" in actions[0].message
    assert not any(isinstance(a, (Launch, PeersRestart)) for a in actions)


def run_again(state: ProgramState, now: float, n: int) -> tuple[ProgramState, float]:
    """From STARTING or BACKOFF to RUNNING with a fresh instance (as the shell would feed it)."""
    if state.phase == Phase.BACKOFF:
        now = state.deadline or now
        state, _ = step(PROG, state, Tick(), now)
    if state.phase != Phase.STARTING:
        return state, now
    state, _ = step(PROG, state, Observed(Instance(1000 + n, float(n))), now + 0.01)
    state, _ = step(PROG, state, ScriptExited(0), now + 0.02)
    return state, now + 0.02


def test_a_healthy_program_that_dies_often_is_never_given_up_on():
    state, now = running(at=0.0), 0.0
    for n in range(3 * PROG.restart.burst):  # far more than burst, each after a stable run
        now += PROG.restart.stable + 0.5
        state, actions = step(PROG, state, Exited(state.instance), now)
        assert state.phase == Phase.STARTING and Launch("comunicador") in actions
        state, now = run_again(state, now, n)
        assert state.phase == Phase.RUNNING


def test_a_crash_loop_still_hits_the_burst_limit():
    state, now = running(at=0.0), 100.0
    for n in range(PROG.restart.burst + 2):
        state, _ = step(PROG, state, Exited(state.instance), now)
        state, now = run_again(state, now, n)
        if state.phase == Phase.FATAL:
            break
        now += 0.5  # dies young every time
    assert state.phase == Phase.FATAL


# --- health decides "started"; recoveries are real (issue 21) ---------------------------------

HEALTHY_PROG = PROG.__class__(**{**PROG.__dict__, "health": Health(Probe("tcp", "127.0.0.1:1"))})


def test_running_dies_before_its_health_check_ever_passed_is_a_failed_start():
    state, actions = step(HEALTHY_PROG, running(at=0.0), Exited(A), 100.0)  # past `stable`
    assert state.phase == Phase.BACKOFF and state.failures == 1
    assert "before its health check ever passed" in actions[0].message


def test_running_dies_after_health_passed_and_stable_restarts_at_once():
    state, _ = step(HEALTHY_PROG, running(at=0.0), HealthPassed(), 5.0)
    assert state.healthy
    state, actions = step(HEALTHY_PROG, state, Exited(A), 100.0)
    assert state.phase == Phase.STARTING and state.failures == 0 and Launch("comunicador") in actions


def test_stable_after_failures_says_back_once_it_ran_stable():
    state, _ = step(PROG, starting(failures=2), Observed(A), 1.0)
    state, _ = step(PROG, state, ScriptExited(0), 1.0)
    assert state.phase == Phase.RUNNING and state.proving and state.deadline == 11.0
    assert kinds(step(PROG, state, Tick(), 5.0)[1]) == []
    state, actions = step(PROG, state, Tick(), 11.0)
    assert kinds(actions) == ["stable"] and state.failures == 0 and state.deadline is None


def test_stable_waits_for_the_health_check_to_pass():
    state, _ = step(HEALTHY_PROG, starting(failures=1), Observed(A), 1.0)
    state, _ = step(HEALTHY_PROG, state, ScriptExited(0), 1.0)
    state, actions = step(HEALTHY_PROG, state, Tick(), 11.0)
    assert kinds(actions) == [] and state.proving and state.deadline is None
    state, actions = step(HEALTHY_PROG, state, HealthPassed(), 12.0)
    assert kinds(actions) == ["stable"] and not state.proving


def test_slow_retry_that_dies_young_gives_up_again_and_is_never_back():
    fatal = ProgramState("comunicador", phase=Phase.FATAL, since=0.0, deadline=600.0,
                         failures=5, reason="5 starts")
    state, _ = step(PROG, fatal, Tick(), 600.0)
    assert state.phase == Phase.STARTING and state.retrying
    state, _ = step(PROG, state, Observed(A), 600.1)
    state, actions = step(PROG, state, ScriptExited(0), 600.1)
    assert state.phase == Phase.RUNNING and kinds(actions) == ["started"]
    state, actions = step(PROG, state, Exited(A), 600.3)
    assert state.phase == Phase.FATAL and "stable" not in kinds(actions)
    assert kinds(actions) == ["exited", "gave_up"] and "slow retry" in actions[-1].message


def test_a_duplicate_whose_loose_launcher_brings_it_back_is_said_once_not_fought():
    prog = PROG.__class__(**{**PROG.__dict__, "duplicates": "stop"})
    loop = Instance(300, 3000.0)
    seen = Observed(A, (B,), launchers=((B, loop, "pid 300 (sh -c while :; do ...)", True),))
    state, actions = step(prog, running(), seen, 1.0)
    stops = [a for a in actions if isinstance(a, StopInstance)]
    assert [s.instance for s in stops] == [loop, B] and stops[0].signum == 15
    assert "and pid 300 (sh -c while" in actions[0].message
    c = Instance(201, 2001.0)  # it came back anyway (the launcher would not die)
    again = Observed(A, (c,), launchers=((c, loop, "pid 300 (sh -c while :; do ...)", True),))
    state, actions = step(prog, state, again, 5.0)
    assert kinds(actions) == ["duplicate"] and not [a for a in actions
                                                     if isinstance(a, StopInstance)]
    assert "keeps coming back" in actions[0].message and "pid 300" in actions[0].message
    d = Instance(202, 2002.0)
    once_more = Observed(A, (d,), launchers=((d, loop, "pid 300 (...)", True),))
    assert step(prog, state, once_more, 9.0)[1] == []  # said once


def test_a_duplicates_parent_held_by_someone_is_never_stopped():
    prog = PROG.__class__(**{**PROG.__dict__, "duplicates": "stop"})
    shell = Instance(300, 3000.0)
    seen = Observed(A, (B,), launchers=((B, shell, "pid 300 (bash)", False),))
    _, actions = step(prog, running(), seen, 1.0)
    assert [a.instance for a in actions if isinstance(a, StopInstance)] == [B]
