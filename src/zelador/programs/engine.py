"""The per-program state machine: one transition table, pure.

`step(program, state, event, now)` returns the new state and the actions to carry out, as plain
data. Nothing here reads a clock, the process table or a socket: `now` is a monotonic time given
by the caller, and what the world looks like arrives as events. The shell
(`runtime/supervisor.py`) carries the actions out. The steps several transitions share are in
`steps.py`.

States use the words supervisor users know:

    UNKNOWN --Observed(none)--> STARTING --script done + process seen--> RUNNING
    RUNNING --Exited--> STARTING (restart at once) or BACKOFF (wait, then start)
    STARTING --timeout/launch failed--> BACKOFF, or FATAL after too many starts in the window
    FATAL --retry timer--> STARTING   (never a dead end)
    RUNNING --restart/stop command, part_of peer restarted--> STOPPING --exit--> STARTING/STOPPED
    RUNNING --Exited with leftovers--> STOPPING (the family goes first) --> STARTING
    STARTING --host problem (script missing, unsafe, no such user)--> FATAL, re-checked quietly
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from zelador.config.durations import format_duration
from zelador.config.model import Program
from zelador.events import Event
from zelador.programs.policy import burst_exceeded
from zelador.programs.states import (
    Action,
    Command,
    EarlyExit,
    Exited,
    HealthPassed,
    Input,
    KillScript,
    LaunchFailed,
    Observed,
    PeerRestarted,
    Phase,
    ProgramState,
    Reloaded,
    ScriptExited,
    SessionChanged,
    StopInstance,
    Tick,
)
from zelador.programs.steps import (
    DEAD_KEPT,
    KILL_GRACE,
    TERM,
    Result,
    adopt,
    after_exit,
    duplicates,
    emit,
    failed,
    give_up,
    host_fatal,
    launch,
    leftovers_progress,
    match_text,
    remember_dead,
    replace,
    settle_stable,
    started,
    stop,
    stop_launcher,
    tree_gone,
    wait_for_desktop,
    without_dead,
)

Handler = Callable[[Program, ProgramState, Input, float, tuple[str, ...]], Result]


def step(program: Program, state: ProgramState, event: Input, now: float,
         waiting_for: tuple[str, ...] = ()) -> Result:
    """Apply one event. `waiting_for` names `after` dependencies that are still starting."""
    if isinstance(event, Tick) and (state.deadline is None or now < state.deadline):
        return state, []
    actions: list[Action] = []
    if isinstance(event, SessionChanged):
        return desktop_changed(program, state, event, now, waiting_for)
    if isinstance(event, Observed):
        event = without_dead(state, event)
        if not (state.phase == Phase.STARTING and state.script_running):  # a start's own
            # processes are never duplicates: the instance is chosen once the start settles
            state, actions = duplicates(program, state, event, now)
    elif isinstance(event, Exited):
        state = remember_dead(state, event.instance)
        if event.successor in state.dead or event.successor in event.leftovers:
            event = dataclasses.replace(event, successor=None)
    handler = TABLE.get((state.phase, type(event)))
    if handler is None:
        return state, actions
    state, more = handler(program, state, event, now, waiting_for)
    if isinstance(event, Observed) and event.instance is not None and state.instance == event.instance:
        state = dataclasses.replace(state, family_size=event.family)
    return state, actions + more


# --- the transitions ---------------------------------------------------------------------


def desktop_changed(p: Program, s: ProgramState, e: SessionChanged, now: float,
                    w: tuple[str, ...]) -> Result:
    """`user: session`: the session came, went, or another one became active."""
    before = s.desktop
    s = dataclasses.replace(s, desktop=e.session, desktop_missing=e.reason or s.desktop_missing)
    if p.user != "session" or e.session == before:
        return s, []
    if s.phase == Phase.WAITING and e.session and p.session_grace > 0:  # the desktop's autostart
        # may be starting it right now: give it `session_grace`, then look (adopt, or launch)
        return replace(s, Phase.WAITING, now, deadline=now + p.session_grace,
                       reason=f"graphical session {e.session}: giving its autostart "
                              f"{p.session_grace:g}s"), []
    if s.phase == Phase.WAITING and e.session:  # look first (the session's autostart may have
        # started it already): the next verdict adopts it or launches
        return replace(s, Phase.UNKNOWN, now, reason=f"graphical session {e.session}: looking"), []
    if not e.session:  # logged out: its instance went with the session; never a restart storm
        actions: list[Action] = [KillScript(s.name)] if s.phase == Phase.STARTING else []
        gone = s if s.instance is None else remember_dead(s, s.instance)
        new, more = wait_for_desktop(gone, now)
        return new, actions + more
    if s.phase == Phase.RUNNING and before:  # another session is active now: move to it
        return stop(p, s, now, then_start=True, why=f"the active session is now {e.session}")
    return s, []


def _fatal_reloaded(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if not s.host_problem:
        return s, []
    return _waiting_tick(p, s, Tick(), now, w)


def _unknown_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    if e.instance is not None:
        # found at zelador's (re)start: it has been running all along, so its run counts
        # from its own start (a death soon after `systemctl restart zelador` is not a failed
        # start of a process that ran for days)
        return adopt(s, e.instance, now, "already running", age=e.age)
    return launch(p, s, now, w, restart=False, why="not running")


def _starting_script_exited(p: Program, s: ProgramState, e: Input, now: float,
                            w: tuple[str, ...]) -> Result:
    assert isinstance(e, ScriptExited)
    s = dataclasses.replace(s, script_running=False, script_status=e.returncode)
    if s.instance is not None:
        return started(p, s, now)
    if e.returncode != 0:  # the shell looked once more just before telling us: nothing there
        output = f"; its output: {e.output}" if e.output else ""
        new, actions = failed(p, s, now, f"start script exited with status {e.returncode} and "
                              f"no process matching {match_text(p)} is running{output}")
        return new, [KillScript(s.name), *actions]  # what it started before failing goes too
    return s, []


def _starting_early_exit(p: Program, s: ProgramState, e: Input, now: float,
                         w: tuple[str, ...]) -> Result:
    assert isinstance(e, EarlyExit)
    if s.instance is not None:
        return s, []
    actions: list[Action] = [KillScript(s.name)]  # the script, or what it left
    new, more = failed(p, s, now, f"pid {e.pid} {e.how} right after it started, before zelador "
                       "saw it run")
    return new, actions + more




def _starting_observed(p: Program, s: ProgramState, e: Input, now: float,
                       w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    s = dataclasses.replace(s, instance=e.instance, start_match=e.start)
    if e.instance is not None and not s.script_running:
        return started(p, s, now)
    return s, []


def _starting_exited(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Exited)
    return (dataclasses.replace(s, instance=None) if e.instance == s.instance else s), []


def _starting_launch_failed(p: Program, s: ProgramState, e: Input, now: float,
                            w: tuple[str, ...]) -> Result:
    assert isinstance(e, LaunchFailed)
    if e.host:
        return host_fatal(p, s, now, e.reason)
    return failed(p, s, now, e.reason)




def _starting_timeout(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    limit = format_duration(p.start_timeout)
    if s.script_running and s.instance is not None:  # the program runs; its script hangs
        new, actions = started(p, dataclasses.replace(s, script_running=False), now)
        note = emit(new, "script_failed", f"start script still running after {limit}; killed it "
                    f"and what else it started, kept pid {s.instance.pid}", 4)
        return new, [KillScript(s.name, spare=s.instance), note, *actions]
    if s.script_running and s.start_match is not None:  # the start *is* the program (it runs
        # in the foreground): settled now, it is the instance
        s = dataclasses.replace(s, instance=s.start_match, script_running=False)
        return started(p, s, now)
    if s.script_running:
        new, actions = failed(p, s, now, f"start script still running after {limit}; killed it "
                              "and everything it started")
        return new, [KillScript(s.name), *actions]
    new, actions = failed(p, s, now, f"start script exited with status {s.script_status} but no "
                          f"process matching {match_text(p)} appeared within {limit}; stopped "
                          "what it started")
    return new, [KillScript(s.name), *actions]


def _starting_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb != "stop":
        return s, []
    # the script may be gone and its daemon not seen yet: kill what the start left, whatever it is
    actions: list[Action] = [KillScript(s.name)]
    new, more = stop(p, dataclasses.replace(s, script_running=False), now, then_start=False,
                     why="stop requested while starting")
    return new, actions + more


def _running_exited(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Exited)
    if e.instance != s.instance:
        return s, []
    return after_exit(p, s, now, w, e.how, e)


def _running_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    if e.instance == s.instance:
        return s, []
    if e.instance is None and p.match.pidfile is not None:
        return s, []  # a pidfile being rewritten (an upgrade) is no death: its pidfd will tell
    if e.instance is None:
        return after_exit(p, s, now, w, "is gone (found by scan)")
    if p.match.pidfile is not None:  # the pidfile moved (nginx binary upgrade): follow it
        old = s.instance.pid if s.instance else None
        new = replace(s, Phase.RUNNING, now, instance=e.instance, reason="")
        return new, [emit(new, "found", f"{p.match.pidfile} now names pid {e.instance.pid} (was "
                          f"{old}): following it", 5)]
    assert s.instance is not None
    return after_exit(p, s, now, w, "is gone (found by scan)", Exited(s.instance, successor=e.instance))


def _running_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb == "start":
        return s, []
    # a check's restart of a run whose health check never passed is one more failed start (it
    # backs off); a restart asked for by hand starts afresh
    failures = s.failures + 1 if e.why and p.health is not None and not s.healthy else 0
    return stop(p, dataclasses.replace(s, failures=failures), now,
                then_start=e.verb == "restart", why=e.why or f"{e.verb} requested")


def _running_tick(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    return settle_stable(p, s, now)


def _running_healthy(p: Program, s: ProgramState, e: Input, now: float,
                     w: tuple[str, ...]) -> Result:
    return settle_stable(p, dataclasses.replace(s, healthy=True), now)


def _running_peer(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, PeerRestarted)
    return stop(p, s, now, then_start=True, why=f"restarting because {e.peer} was restarted "
                "(part_of)")


def _stopping_gone(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if s.leftovers:
        return leftovers_progress(p, s, e, now, w) if isinstance(e, Exited) else (s, [])
    if isinstance(e, Exited) and e.instance != s.instance:
        return s, []
    if isinstance(e, Observed) and e.instance == s.instance:
        return s, []
    pid = s.instance.pid if s.instance else None
    gone = dataclasses.replace(s, instance=None)
    if isinstance(e, Observed) and e.instance is not None:  # someone else started another one
        if s.then_start:
            return adopt(gone, e.instance, now, f"pid {pid} stopped; another instance is running",
                         stable=p.restart.stable)
        return replace(gone, Phase.STOPPED, now, instance=e.instance, reason="stopped on request"), [
            emit(gone, "stopped", f"pid {pid} stopped", 5).with_fields(pid=pid)]
    left = e.leftovers if isinstance(e, Exited) and p.family == "stop" else ()
    if left:  # the rest of its tree: TERM now, SIGKILL at the stop's deadline; then go on
        pids = ", ".join(str(i.pid) for i in left)
        new = dataclasses.replace(gone, leftovers=left, last_stopped=pid,
                                  dead=(*gone.dead, *left)[-DEAD_KEPT:],
                                  reason=f"pid {pid} stopped; stopping the rest of its tree "
                                  f"(pid {pids})")
        return new, [*(StopInstance(s.name, i, new.forced, signum=TERM) for i in left)]
    return tree_gone(p, dataclasses.replace(s, last_stopped=pid), now, w)


def _stopping_timeout(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if s.leftovers:
        return leftovers_progress(p, s, e, now, w)
    if s.instance is None:
        return s, []
    if s.forced:
        new = dataclasses.replace(s, deadline=None, reason="will not die, even after SIGKILL")
        return new, [emit(new, "stop_failed", "still alive after SIGKILL (stuck in the kernel?)", 2)]
    new = dataclasses.replace(s, forced=True, deadline=now + KILL_GRACE)
    return new, [emit(new, "stop_timeout", f"did not stop within {format_duration(p.stop.timeout)}; "
                      "sending SIGKILL", 4),
                 StopInstance(s.name, s.instance, True, tree=p.family == "stop")]


def _stopping_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    return dataclasses.replace(s, then_start=e.verb != "stop"), []


def _waiting_tick(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if s.host_problem:  # quietly: a still-missing script is not news every few seconds
        new, actions = launch(p, dataclasses.replace(s, starts=()), now, w,
                              restart=s.restarting, why="host problem re-check")
        return new, [a for a in actions if not isinstance(a, Event)]
    if s.phase == Phase.FATAL:
        s = dataclasses.replace(s, retrying=True, starts=())
        return launch(p, s, now, w, restart=True, why="slow retry after giving up")
    if burst_exceeded(p.restart, s.starts, now):
        return give_up(p, s, now, s.reason)
    why = "dependency is up" if s.reason.startswith("waiting for") else "backoff over"
    return launch(p, s, now, w, restart=s.restarting, why=why)


def _waiting_reloaded(p: Program, s: ProgramState, e: Input, now: float,
                      w: tuple[str, ...]) -> Result:
    if p.user == "session":
        return s, []
    # no longer `user: session`: nothing to wait for; the next look adopts it or starts it
    return replace(s, Phase.UNKNOWN, now, reason="reloaded: no longer waits for a session"), []


def _waiting_grace_over(p: Program, s: ProgramState, e: Input, now: float,
                        w: tuple[str, ...]) -> Result:
    """`session_grace` after a login is over: look, and adopt what the autostart started."""
    if not s.desktop:
        return replace(s, Phase.WAITING, now, reason=s.reason), []
    return replace(s, Phase.UNKNOWN, now, reason=f"graphical session {s.desktop}: looking"), []


def _desktop_waiting_observed(p: Program, s: ProgramState, e: Input, now: float,
                              w: tuple[str, ...]) -> Result:
    return s, []  # without a session, a process of that name is not ours to adopt


def _waiting_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    if e.instance is None:
        return s, []
    return adopt(s, e.instance, now, "came back without us", stable=p.restart.stable)


def _waiting_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if s.respawner is not None and s.phase == Phase.BACKOFF:  # its launcher would start one
        return stop_launcher(p, s, now, e)  # beside ours: it goes first
    if e.verb == "stop":
        new = replace(s, Phase.STOPPED, now, reason="stopped on request")
        return new, [emit(new, "stopped", "stop requested; will not restart", 5)]
    fresh = dataclasses.replace(s, failures=0, starts=(), retrying=False)
    return launch(p, fresh, now, w, restart=True, why=e.why or f"{e.verb} requested")


def _stopped_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    return dataclasses.replace(s, instance=e.instance), []


def _stopped_exited(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Exited)
    return (dataclasses.replace(s, instance=None) if e.instance == s.instance else s), []


def _stopped_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb == "stop":
        return s, []
    fresh = dataclasses.replace(s, failures=0, starts=(), retrying=False, restarting=False)
    if s.instance is not None:
        return adopt(fresh, s.instance, now, f"{e.verb} requested; already running")
    return launch(p, fresh, now, w, restart=False, why=f"{e.verb} requested")


def _unknown_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb == "stop":
        return replace(s, Phase.STOPPED, now, reason="stopped on request"), []
    return s, []


P = Phase
TABLE: dict[tuple[Phase, type], Handler] = {
    (P.UNKNOWN, Observed): _unknown_observed,
    (P.UNKNOWN, Command): _unknown_command,
    (P.STARTING, ScriptExited): _starting_script_exited,
    (P.STARTING, Observed): _starting_observed,
    (P.STARTING, Exited): _starting_exited,
    (P.STARTING, LaunchFailed): _starting_launch_failed,
    (P.STARTING, EarlyExit): _starting_early_exit,
    (P.FATAL, Reloaded): _fatal_reloaded,
    (P.WAITING, Command): _waiting_command,
    (P.WAITING, Reloaded): _waiting_reloaded,
    (P.WAITING, Observed): _desktop_waiting_observed,
    (P.WAITING, Tick): _waiting_grace_over,
    (P.STARTING, Tick): _starting_timeout,
    (P.STARTING, Command): _starting_command,
    (P.RUNNING, Exited): _running_exited,
    (P.RUNNING, Observed): _running_observed,
    (P.RUNNING, Command): _running_command,
    (P.RUNNING, PeerRestarted): _running_peer,
    (P.RUNNING, Tick): _running_tick,
    (P.RUNNING, HealthPassed): _running_healthy,
    (P.STOPPING, Exited): _stopping_gone,
    (P.STOPPING, Observed): _stopping_gone,
    (P.STOPPING, Tick): _stopping_timeout,
    (P.STOPPING, Command): _stopping_command,
    (P.BACKOFF, Tick): _waiting_tick,
    (P.BACKOFF, Observed): _waiting_observed,
    (P.BACKOFF, Command): _waiting_command,
    (P.FATAL, Tick): _waiting_tick,
    (P.FATAL, Observed): _waiting_observed,
    (P.FATAL, Command): _waiting_command,
    (P.STOPPED, Observed): _stopped_observed,
    (P.STOPPED, Exited): _stopped_exited,
    (P.STOPPED, Command): _stopped_command,
}
