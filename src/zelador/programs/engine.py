"""The per-program state machine: one transition table, pure.

`step(program, state, event, now)` returns the new state and the actions to carry out, as plain
data. Nothing here reads a clock, the process table or a socket: `now` is a monotonic time given
by the caller, and what the world looks like arrives as events. The shell (`daemon.py`) carries
the actions out.

States use the words supervisor users know:

    UNKNOWN --Observed(none)--> STARTING --script done + process seen--> RUNNING
    RUNNING --Exited--> STARTING (restart at once) or BACKOFF (wait, then start)
    STARTING --timeout/launch failed--> BACKOFF, or FATAL after too many starts in the window
    FATAL --retry timer--> STARTING   (never a dead end)
    RUNNING --restart/stop command, part_of peer restarted--> STOPPING --exit--> STARTING/STOPPED
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from zelador.config.durations import format_duration
from zelador.config.model import Program
from zelador.events import Event
from zelador.events import event as make_event
from zelador.programs.policy import burst_exceeded, prune_starts, restart_delay
from zelador.programs.states import (
    Action,
    Command,
    EarlyExit,
    Exited,
    Input,
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

HOST_RECHECK = 5.0  # how often a program held back by a host problem looks again
KILL_GRACE = 5.0  # after SIGKILL, how long before we say a process will not die
WAIT_POLL = 0.1  # how often a program waiting for an `after` dependency looks again


Result = tuple[ProgramState, list[Action]]
Handler = Callable[[Program, ProgramState, Input, float, tuple[str, ...]], Result]


def step(program: Program, state: ProgramState, event: Input, now: float,
         waiting_for: tuple[str, ...] = ()) -> Result:
    """Apply one event. `waiting_for` names `after` dependencies that are still starting."""
    if isinstance(event, Tick) and (state.deadline is None or now < state.deadline):
        return state, []
    actions: list[Action] = []
    if isinstance(event, Observed):
        event = _without_dead(state, event)
        state, actions = _duplicates(program, state, event)
    elif isinstance(event, Exited):
        state = _remember_dead(state, event.instance)
        if event.successor in state.dead or event.successor in event.leftovers:
            event = dataclasses.replace(event, successor=None)
    handler = TABLE.get((state.phase, type(event)))
    if handler is None:
        return state, actions
    state, more = handler(program, state, event, now, waiting_for)
    if isinstance(event, Observed) and event.instance is not None and state.instance == event.instance:
        state = dataclasses.replace(state, family_size=event.family)
    return state, actions + more


# --- helpers that several transitions share ---------------------------------------------


def _emit(state: ProgramState, kind: str, message: str, priority: int = 6) -> Event:
    pid = state.instance.pid if state.instance else None
    return make_event(kind, f"{state.name}: {message}", subject=state.name, priority=priority, pid=pid,
                 restarts=state.restarts)


def _launch(program: Program, state: ProgramState, now: float, waiting_for: tuple[str, ...],
            *, restart: bool, why: str) -> Result:
    assert state.instance is None, "never start a second instance"
    if waiting_for:
        reason = f"waiting for {', '.join(waiting_for)} to start first"
        return _replace(state, Phase.BACKOFF, now, deadline=now + WAIT_POLL, reason=reason,
                        restarting=state.restarting or restart), []
    starts = (*prune_starts(program.restart, state.starts, now), now)
    new = _replace(state, Phase.STARTING, now, deadline=now + program.start_timeout,
                   attempts=state.attempts + 1, starts=starts,
                   script_running=True, script_status=None, restarting=state.restarting or restart,
                   reason=why)
    kind = "restarting" if restart else "starting"
    return new, [_emit(new, kind, f"{kind} ({why}): {' '.join(program.start)}"), Launch(state.name)]


def _started(program: Program, state: ProgramState, now: float) -> Result:
    took = format_duration(now - state.since)
    status = state.script_status
    note = f"; start script exited with status {status}" if status else ""
    restarts = state.restarts + 1 if state.restarting else state.restarts
    new = _replace(state, Phase.RUNNING, now, reason="", host_problem="", retrying=False,
                   restarting=False, restarts=restarts)
    pid = new.instance.pid if new.instance else "?"
    actions: list[Action] = [_emit(new, "started", f"running as pid {pid} ({took} after launch{note})",
                                   5 if not status else 4)]
    if state.restarting:
        actions.append(PeersRestart(state.name))
    return new, actions


def _adopt(state: ProgramState, instance: Instance, now: float, how: str) -> Result:
    came_back = state.restarting or state.phase in (Phase.BACKOFF, Phase.FATAL)
    new = _replace(state, Phase.RUNNING, now, instance=instance, reason="", host_problem="",
                   retrying=False, restarting=False, script_running=False,
                   restarts=state.restarts + 1 if came_back else state.restarts)
    actions: list[Action] = [_emit(new, "found", f"{how} (pid {instance.pid})", 5)]
    if state.phase in (Phase.BACKOFF, Phase.FATAL):
        actions.append(PeersRestart(state.name))
    return new, actions


def _failed(program: Program, state: ProgramState, now: float, reason: str) -> Result:
    failures = state.failures + 1
    state = dataclasses.replace(state, failures=failures, script_running=False)
    policy = program.restart
    if state.retrying or burst_exceeded(policy, state.starts, now):
        return _give_up(program, state, now, reason)
    delay = restart_delay(policy, failures)
    new = _replace(state, Phase.BACKOFF, now, deadline=now + delay, reason=reason)
    return new, [_emit(new, "start_failed",
                       f"start failed: {reason}; next try in {format_duration(delay)}", 3)]


def _give_up(program: Program, state: ProgramState, now: float, reason: str) -> Result:
    retry = program.restart.retry_every
    count = len(prune_starts(program.restart, state.starts, now))
    why = (f"the slow retry failed too: {reason}" if state.retrying else
           f"{count} starts within {format_duration(program.restart.window)}, last: {reason}")
    new = _replace(state, Phase.FATAL, now, deadline=now + retry, reason=why)
    return new, [_emit(new, "gave_up", f"giving up for {format_duration(retry)} ({why}); "
                       f"`zelador restart {state.name}` tries at once", 2)]


def _after_exit(program: Program, state: ProgramState, now: float,
                waiting_for: tuple[str, ...], how: str, exited: Exited | None = None) -> Result:
    lived = now - state.since
    pid = state.instance.pid if state.instance else None
    young = lived < program.restart.stable
    failures = state.failures + 1 if young else 0
    left = exited.leftovers if exited is not None else ()
    gone = _replace(state, state.phase, state.since, instance=None, failures=failures,
                    last_exit=f"pid {pid} {how} after {format_duration(lived)}",
                    dead=(*state.dead, *left)[-DEAD_KEPT:], family_size=0)
    exit_event = _emit(gone, "exited", gone.last_exit, 4).with_fields(
        pid=pid, exit_status=exited.exit_status if exited else None,
        exit_signal=exited.exit_signal if exited else None)
    stop_left = bool(left) and program.family == "stop"
    if exited is not None and exited.successor is not None:
        new, actions = _adopt(dataclasses.replace(gone, restarting=True), exited.successor, now,
                              "another instance took its place")
        stops: list[Action] = [StopInstance(state.name, i, False, duplicate=True,
                                            kill_after=program.stop.timeout) for i in left
                               if stop_left]
        return new, [exit_event, *actions, *stops, PeersRestart(state.name)]
    if stop_left:  # orphaned workers may hold its port: they go first, as a cgroup kill would
        pids = ", ".join(str(i.pid) for i in left)
        new = _replace(gone, Phase.STOPPING, now, deadline=now + program.stop.timeout,
                       then_start=True, forced=False, leftovers=left, restarting=True,
                       reason=f"stopping what pid {pid} left behind (pid {pids}) before restarting")
        return new, [exit_event, _emit(new, "stopping", new.reason, 5),
                     *(StopInstance(state.name, i, False, duplicate=True) for i in left)]
    new, actions = _restart_after_exit(program, gone, now, waiting_for, f"pid {pid} {how}")
    return new, [exit_event, *actions]


def _restart_after_exit(program: Program, gone: ProgramState, now: float,
                        waiting_for: tuple[str, ...], why: str) -> Result:
    """The instance is gone (and its leftovers): start again now, after a backoff, or give up."""
    if burst_exceeded(program.restart, gone.starts, now):
        return _give_up(program, gone, now, why)
    delay = restart_delay(program.restart, gone.failures)
    if delay <= 0:
        return _launch(program, gone, now, waiting_for, restart=True, why=why)
    new = _replace(gone, Phase.BACKOFF, now, deadline=now + delay, restarting=True,
                   reason=f"{why}; restarting in {format_duration(delay)}")
    return new, [_emit(new, "backoff", f"restarting in {format_duration(delay)}")]


def _leftovers_progress(p: Program, s: ProgramState, e: Input, now: float,
                        w: tuple[str, ...]) -> Result:
    """STOPPING after an exit: wait for the leftover family to go, then restart (or stop)."""
    remaining = s.leftovers
    if isinstance(e, Exited):
        remaining = tuple(i for i in remaining if i != e.instance)
    elif isinstance(e, Tick):
        if not s.forced:
            new = dataclasses.replace(s, forced=True, deadline=now + KILL_GRACE)
            return new, [_emit(new, "stop_timeout", f"left-behind pids still there after "
                               f"{format_duration(p.stop.timeout)}; sending SIGKILL", 4),
                         *(StopInstance(s.name, i, True) for i in remaining)]
        remaining = ()  # will not die: start anyway, they are never taken for the program
    if remaining:
        return dataclasses.replace(s, leftovers=remaining), []
    done = dataclasses.replace(s, leftovers=(), forced=False)
    if not s.then_start:
        new = _replace(done, Phase.STOPPED, now, reason="stopped on request")
        return new, [_emit(new, "stopped", "stopped, with what it left behind", 5)]
    return _restart_after_exit(p, done, now, w, s.last_exit)




def _replace(state: ProgramState, phase: Phase, since: float, *,
             deadline: float | None = None, **changes: object) -> ProgramState:
    return dataclasses.replace(state, phase=phase, since=since, deadline=deadline,
                               **changes)  # type: ignore[arg-type]


def _stop(program: Program, state: ProgramState, now: float, *, then_start: bool,
          why: str) -> Result:
    if state.instance is None:
        return _replace(state, Phase.STOPPED, now, reason=why), [_emit(state, "stopped", why)]
    new = _replace(state, Phase.STOPPING, now, deadline=now + program.stop.timeout,
                   then_start=then_start, forced=False, reason=why)
    return new, [_emit(new, "stopping", why, 5), StopInstance(state.name, state.instance, False)]


def _duplicates(program: Program, state: ProgramState, event: Observed) -> Result:
    fresh = [d for d in event.duplicates if d not in state.duplicates]
    state = dataclasses.replace(state, duplicates=event.duplicates)
    actions: list[Action] = []
    for dup in sorted(fresh, key=lambda d: d.create_time, reverse=True):
        stop = program.duplicates == "stop"
        what = "stopping it" if stop else "left running (set duplicates: stop to stop it)"
        main = event.instance.pid if event.instance else "?"
        actions.append(make_event("duplicate", f"{state.name}: a second instance, pid {dup.pid}, "
                                  f"runs beside pid {main}; {what}", subject=state.name,
                                  priority=4,
                                  pid=dup.pid, restarts=state.restarts))
        if stop:
            actions.append(StopInstance(state.name, dup, False, duplicate=True,
                                        kill_after=program.stop.timeout))
    return state, actions


DEAD_KEPT = 256  # how many dead (or left-over) identities a program remembers


def _remember_dead(state: ProgramState, instance: Instance) -> ProgramState:
    if instance in state.dead:
        return state
    return dataclasses.replace(state, dead=(*state.dead, instance)[-DEAD_KEPT:],
                               duplicates=tuple(d for d in state.duplicates if d != instance))


def _without_dead(state: ProgramState, seen: Observed) -> Observed:
    """A process we saw die is never the instance again, whatever a stale cache says."""
    if not state.dead:
        return seen
    instance = seen.instance if seen.instance not in state.dead else None
    duplicates = tuple(d for d in seen.duplicates if d not in state.dead)
    if instance is None and duplicates:
        instance, duplicates = duplicates[0], duplicates[1:]
    return dataclasses.replace(seen, instance=instance, duplicates=duplicates)


# --- the transitions ---------------------------------------------------------------------


def _fatal_reloaded(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if not s.host_problem:
        return s, []
    return _waiting_tick(p, s, Tick(), now, w)


def _unknown_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    if e.instance is not None:
        return _adopt(s, e.instance, now, "already running")
    return _launch(p, s, now, w, restart=False, why="not running")


def _starting_script_exited(p: Program, s: ProgramState, e: Input, now: float,
                            w: tuple[str, ...]) -> Result:
    assert isinstance(e, ScriptExited)
    s = dataclasses.replace(s, script_running=False, script_status=e.returncode)
    if s.instance is not None:
        return _started(p, s, now)
    if e.returncode != 0:  # the shell looked once more just before telling us: nothing there
        output = f"; its output: {e.output}" if e.output else ""
        return _failed(p, s, now, f"start script exited with status {e.returncode} and no process "
                       f"matching {_match_text(p)} is running{output}")
    return s, []


def _starting_early_exit(p: Program, s: ProgramState, e: Input, now: float,
                         w: tuple[str, ...]) -> Result:
    assert isinstance(e, EarlyExit)
    if s.instance is not None:
        return s, []
    actions: list[Action] = [KillScript(s.name)] if s.script_running else []
    new, more = _failed(p, s, now, f"pid {e.pid} {e.how} right after it started, before zelador "
                        "saw it run")
    return new, actions + more


def _match_text(p: Program) -> str:
    return ", ".join(f"{k}={getattr(p.match, k)!r}" for k in ("name", "exe", "cmdline", "pidfile",
                                                              "user") if getattr(p.match, k))


def _starting_observed(p: Program, s: ProgramState, e: Input, now: float,
                       w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    s = dataclasses.replace(s, instance=e.instance)
    if e.instance is not None and not s.script_running:
        return _started(p, s, now)
    return s, []


def _starting_exited(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Exited)
    return (dataclasses.replace(s, instance=None) if e.instance == s.instance else s), []


def _starting_launch_failed(p: Program, s: ProgramState, e: Input, now: float,
                            w: tuple[str, ...]) -> Result:
    assert isinstance(e, LaunchFailed)
    if e.host:
        return _host_fatal(p, s, now, e.reason)
    return _failed(p, s, now, e.reason)


def _host_fatal(p: Program, s: ProgramState, now: float, problem: str) -> Result:
    """This machine cannot start it (script missing mid-upgrade, unsafe, unknown user): FATAL,
    looked at again every HOST_RECHECK and on reload, said once per distinct problem."""
    recheck = min(HOST_RECHECK, p.restart.retry_every)
    new = _replace(s, Phase.FATAL, now, deadline=now + recheck, host_problem=problem,
                   script_running=False, reason=f"cannot start: {problem} (checked again every "
                   f"{format_duration(recheck)}, and on reload)")
    if problem == s.host_problem:
        return new, []
    return new, [_emit(new, "host_problem", new.reason, 3)]


def _starting_timeout(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    limit = format_duration(p.start_timeout)
    if s.script_running and s.instance is not None:  # the program runs; its script hangs
        new, actions = _started(p, dataclasses.replace(s, script_running=False), now)
        note = _emit(new, "script_failed", f"start script still running after {limit}; killed it "
                     f"and what else it started, kept pid {s.instance.pid}", 4)
        return new, [KillScript(s.name, spare=s.instance), note, *actions]
    if s.script_running:
        new, actions = _failed(p, s, now, f"start script still running after {limit}; killed it "
                               "and everything it started")
        return new, [KillScript(s.name), *actions]
    return _failed(p, s, now, f"start script exited with status {s.script_status} but no process "
                   f"matching {_match_text(p)} appeared within {limit}")


def _starting_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb != "stop":
        return s, []
    actions: list[Action] = [KillScript(s.name)] if s.script_running else []
    new, more = _stop(p, dataclasses.replace(s, script_running=False), now, then_start=False,
                      why="stop requested while starting")
    return new, actions + more


def _running_exited(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Exited)
    if e.instance != s.instance:
        return s, []
    return _after_exit(p, s, now, w, e.how, e)


def _running_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    if e.instance == s.instance:
        return s, []
    if e.instance is None and p.match.pidfile is not None:
        return s, []  # a pidfile being rewritten (an upgrade) is no death: its pidfd will tell
    if e.instance is None:
        return _after_exit(p, s, now, w, "is gone (found by scan)")
    if p.match.pidfile is not None:  # the pidfile moved (nginx binary upgrade): follow it
        old = s.instance.pid if s.instance else None
        new = _replace(s, Phase.RUNNING, now, instance=e.instance, reason="")
        return new, [_emit(new, "found", f"{p.match.pidfile} now names pid {e.instance.pid} (was "
                           f"{old}): following it", 5)]
    assert s.instance is not None
    return _after_exit(p, s, now, w, "is gone (found by scan)", Exited(s.instance, successor=e.instance))


def _running_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb == "start":
        return s, []
    return _stop(p, dataclasses.replace(s, failures=0), now, then_start=e.verb == "restart",
                 why=f"{e.verb} requested")


def _running_peer(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, PeerRestarted)
    return _stop(p, s, now, then_start=True, why=f"restarting because {e.peer} was restarted "
                 "(part_of)")


def _stopping_gone(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if s.leftovers:
        return _leftovers_progress(p, s, e, now, w) if isinstance(e, Exited) else (s, [])
    if isinstance(e, Exited) and e.instance != s.instance:
        return s, []
    if isinstance(e, Observed) and e.instance == s.instance:
        return s, []
    pid = s.instance.pid if s.instance else None
    gone = dataclasses.replace(s, instance=None)
    if isinstance(e, Observed) and e.instance is not None:  # someone else started another one
        if s.then_start:
            return _adopt(gone, e.instance, now, f"pid {pid} stopped; another instance is running")
        return _replace(gone, Phase.STOPPED, now, instance=e.instance, reason="stopped on request"), [
            _emit(gone, "stopped", f"pid {pid} stopped", 5).with_fields(pid=pid)]
    if s.then_start:
        return _launch(p, gone, now, w, restart=True, why=f"pid {pid} stopped for restart")
    new = _replace(gone, Phase.STOPPED, now, reason="stopped on request")
    return new, [_emit(new, "stopped", f"pid {pid} stopped", 5).with_fields(pid=pid)]


def _stopping_timeout(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if s.leftovers:
        return _leftovers_progress(p, s, e, now, w)
    if s.instance is None:
        return s, []
    if s.forced:
        new = dataclasses.replace(s, deadline=None, reason="will not die, even after SIGKILL")
        return new, [_emit(new, "stop_failed", "still alive after SIGKILL (stuck in the kernel?)", 2)]
    new = dataclasses.replace(s, forced=True, deadline=now + KILL_GRACE)
    return new, [_emit(new, "stop_timeout", f"did not stop within {format_duration(p.stop.timeout)}; "
                       "sending SIGKILL", 4), StopInstance(s.name, s.instance, True)]


def _stopping_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    return dataclasses.replace(s, then_start=e.verb != "stop"), []


def _waiting_tick(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    if s.host_problem:  # quietly: a still-missing script is not news every few seconds
        new, actions = _launch(p, dataclasses.replace(s, starts=()), now, w,
                               restart=s.restarting, why="host problem re-check")
        return new, [a for a in actions if not isinstance(a, Event)]
    if s.phase == Phase.FATAL:
        s = dataclasses.replace(s, retrying=True, starts=())
        return _launch(p, s, now, w, restart=True, why="slow retry after giving up")
    if burst_exceeded(p.restart, s.starts, now):
        return _give_up(p, s, now, s.reason)
    why = "dependency is up" if s.reason.startswith("waiting for") else "backoff over"
    return _launch(p, s, now, w, restart=s.restarting, why=why)


def _waiting_observed(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Observed)
    if e.instance is None:
        return s, []
    return _adopt(s, e.instance, now, "came back without us")


def _waiting_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb == "stop":
        new = _replace(s, Phase.STOPPED, now, reason="stopped on request")
        return new, [_emit(new, "stopped", "stop requested; will not restart", 5)]
    fresh = dataclasses.replace(s, failures=0, starts=(), retrying=False)
    return _launch(p, fresh, now, w, restart=True, why=f"{e.verb} requested")


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
        return _adopt(fresh, s.instance, now, f"{e.verb} requested; already running")
    return _launch(p, fresh, now, w, restart=False, why=f"{e.verb} requested")


def _unknown_command(p: Program, s: ProgramState, e: Input, now: float, w: tuple[str, ...]) -> Result:
    assert isinstance(e, Command)
    if e.verb == "stop":
        return _replace(s, Phase.STOPPED, now, reason="stopped on request"), []
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
    (P.STARTING, Tick): _starting_timeout,
    (P.STARTING, Command): _starting_command,
    (P.RUNNING, Exited): _running_exited,
    (P.RUNNING, Observed): _running_observed,
    (P.RUNNING, Command): _running_command,
    (P.RUNNING, PeerRestarted): _running_peer,
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
