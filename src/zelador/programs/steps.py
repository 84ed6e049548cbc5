"""The steps several transitions share: launch, started, adopt, failed, give up, after an exit.

Pure, like the engine: each takes the program, the state and `now`, and returns the new state
and the actions. `engine.py` holds the transition table that calls them.
"""

from __future__ import annotations

import dataclasses

from zelador.config.durations import format_duration
from zelador.config.model import Program
from zelador.events import Event
from zelador.events import event as make_event
from zelador.programs.policy import burst_exceeded, prune_starts, restart_delay
from zelador.programs.states import (
    Action,
    Command,
    Exited,
    Input,
    Instance,
    Launch,
    Observed,
    PeersRestart,
    Phase,
    ProgramState,
    StopInstance,
    Tick,
)

HOST_RECHECK = 5.0  # how often a program held back by a host problem looks again
KILL_GRACE = 5.0  # after SIGKILL, how long before we say a process will not die
WAIT_POLL = 0.1  # how often a program waiting for an `after` dependency looks again
DEAD_KEPT = 256  # how many dead (or left-over) identities a program remembers
TERM = 15  # what is left of a tree once its instance is gone gets SIGTERM

Result = tuple[ProgramState, list[Action]]

def emit(state: ProgramState, kind: str, message: str, priority: int = 6) -> Event:
    pid = state.instance.pid if state.instance else None
    return make_event(kind, f"{state.name}: {message}", subject=state.name, priority=priority, pid=pid,
                 restarts=state.restarts)


def launch(program: Program, state: ProgramState, now: float, waiting_for: tuple[str, ...],
           *, restart: bool, why: str) -> Result:
    assert state.instance is None, "never start a second instance"
    if program.user == "session" and not state.desktop:
        return wait_for_desktop(state, now, restart)
    if waiting_for:
        reason = f"waiting for {', '.join(waiting_for)} to start first"
        return replace(state, Phase.BACKOFF, now, deadline=now + WAIT_POLL, reason=reason,
                       restarting=state.restarting or restart), []
    starts = (*prune_starts(program.restart, state.starts, now), now)
    new = replace(state, Phase.STARTING, now, deadline=now + program.start_timeout,
                  attempts=state.attempts + 1, starts=starts, respawner=None, start_match=None,
                  script_running=True, script_status=None, restarting=state.restarting or restart,
                  reason=why)
    kind = "restarting" if restart else "starting"
    return new, [emit(new, kind, f"{kind} ({why}): {' '.join(program.start)}"), Launch(state.name)]


def wait_for_desktop(state: ProgramState, now: float, restart: bool = False) -> Result:
    """No graphical session: WAITING, with no failure, backoff or alert counted."""
    reason = f"waiting for a graphical session: {state.desktop_missing}"
    new = replace(state, Phase.WAITING, now, instance=None, script_running=False, reason=reason,
                  restarting=state.restarting or restart, failures=0, starts=())
    if state.phase == Phase.WAITING:
        return new, []
    return new, [emit(new, "waiting", reason, 5)]


def started(program: Program, state: ProgramState, now: float) -> Result:
    took = format_duration(now - state.since)
    status = state.script_status
    note = f"; start script exited with status {status}" if status else ""
    restarts = state.restarts + 1 if state.restarting else state.restarts
    proving = state.failures > 0 or state.retrying or state.retried
    new = replace(state, Phase.RUNNING, now, reason="", host_problem="", retrying=False,
                  restarting=False, restarts=restarts, healthy=False, proving=proving,
                  retried=state.retrying or state.retried,
                  deadline=now + program.restart.stable if proving else None)
    pid = new.instance.pid if new.instance else "?"
    actions: list[Action] = [emit(new, "started", f"running as pid {pid} ({took} after launch{note})",
                                  5 if not status else 4)]
    if state.restarting:
        actions.append(PeersRestart(state.name))
    return new, actions


def adopt(state: ProgramState, instance: Instance, now: float, how: str,
          age: float | None = None, stable: float | None = None) -> Result:
    """Take `instance` as the program's; `age`: how long it has run already, when known;
    `stable`: the program's restart.stable (a comeback after failures is back after it)."""
    came_back = state.restarting or state.phase in (Phase.BACKOFF, Phase.FATAL)
    since = now - max(0.0, age) if age is not None else now
    proving = came_back and (state.failures > 0 or state.phase == Phase.FATAL or state.retried)
    new = replace(state, Phase.RUNNING, since, instance=instance, reason="", host_problem="",
                  retrying=False, restarting=False, script_running=False, respawner=None,
                  start_match=None, healthy=not came_back, proving=proving,
                  retried=state.retried or state.phase == Phase.FATAL,
                  deadline=now + stable if proving and stable is not None else None,
                  restarts=state.restarts + 1 if came_back else state.restarts)
    actions: list[Action] = [emit(new, "found", f"{how} (pid {instance.pid})", 5)]
    if came_back:  # part_of peers follow (also a restart pending when zelador itself restarted)
        actions.append(PeersRestart(state.name))
    return new, actions


def failed(program: Program, state: ProgramState, now: float, reason: str) -> Result:
    failures = state.failures + 1
    state = dataclasses.replace(state, failures=failures, script_running=False)
    policy = program.restart
    if state.retrying or burst_exceeded(policy, state.starts, now):
        return give_up(program, state, now, reason)
    delay = restart_delay(policy, failures)
    new = replace(state, Phase.BACKOFF, now, deadline=now + delay, reason=reason)
    return new, [emit(new, "start_failed",
                      f"start failed: {reason}; next try in {format_duration(delay)}", 3)]


def give_up(program: Program, state: ProgramState, now: float, reason: str) -> Result:
    retry = program.restart.retry_every
    count = len(prune_starts(program.restart, state.starts, now))
    why = (f"the slow retry failed too: {reason}" if state.retrying else
           f"{count} starts within {format_duration(program.restart.window)}, last: {reason}")
    new = replace(state, Phase.FATAL, now, deadline=now + retry, reason=why)
    return new, [emit(new, "gave_up", f"giving up for {format_duration(retry)} ({why}); "
                      f"`zelador restart {state.name}` tries at once", 2)]


def after_exit(program: Program, state: ProgramState, now: float,
               waiting_for: tuple[str, ...], how: str, exited: Exited | None = None) -> Result:
    lived = now - state.since
    pid = state.instance.pid if state.instance else None
    unhealthy = program.health is not None and not state.healthy
    young = lived < program.restart.stable or unhealthy  # health decides "started" if it exists
    if unhealthy:
        how += " before its health check ever passed (a failed start)"
    failures = state.failures + 1 if young else 0
    left = exited.leftovers if exited is not None else ()
    # A run longer than `stable` proves the program healthy: its failures and its burst window
    # start afresh, so a healthy program's occasional death is always restarted at once.
    gone = replace(state, state.phase, state.since, instance=None, failures=failures,
                   starts=state.starts if young else (),
                   last_exit=f"pid {pid} {how} after {format_duration(lived)}",
                   dead=(*state.dead, *left)[-DEAD_KEPT:], family_size=0,
                   respawner=exited.respawner if exited is not None else None,
                   healthy=False, proving=False, retried=state.retried and young)
    exit_event = emit(gone, "exited", gone.last_exit, 4).with_fields(
        pid=pid, exit_status=exited.exit_status if exited else None,
        exit_signal=exited.exit_signal if exited else None)
    stop_left = bool(left) and program.family == "stop"
    if young and state.retried and not (exited is not None and exited.successor is not None):
        # the slow retry ran and died young: the same problem, so FATAL again, said once
        new, actions = give_up(program, dataclasses.replace(gone, retrying=True), now,
                               f"pid {pid} {how} after {format_duration(lived)}")
        stops: list[Action] = [StopInstance(state.name, i, False, duplicate=True,
                                            kill_after=program.stop.timeout) for i in left
                               if stop_left]
        return new, [exit_event, *actions, *stops]
    if exited is not None and exited.successor is not None:
        new, actions = adopt(dataclasses.replace(gone, restarting=True), exited.successor, now,
                             "another instance took its place", stable=program.restart.stable)
        stops = [StopInstance(state.name, i, False, duplicate=True,
                                            kill_after=program.stop.timeout) for i in left
                               if stop_left]
        return new, [exit_event, *actions, *stops]
    if stop_left:  # orphaned workers may hold its port: they go first, as a cgroup kill would
        pids = ", ".join(str(i.pid) for i in left)
        new = replace(gone, Phase.STOPPING, now, deadline=now + program.stop.timeout,
                      then_start=True, forced=False, leftovers=left, restarting=True,
                      reason=f"stopping what pid {pid} left behind (pid {pids}) before restarting")
        return new, [exit_event, emit(new, "stopping", new.reason, 5),
                     *(StopInstance(state.name, i, False, duplicate=True) for i in left)]
    new, actions = restart_after_exit(program, gone, now, waiting_for, f"pid {pid} {how}")
    return new, [exit_event, *actions]


def settle_stable(program: Program, state: ProgramState, now: float) -> Result:
    """RUNNING after failures: "back" (the event that closes its problem) once it has run
    `stable` and, when it has a health check, that check has passed."""
    if not state.proving:
        return dataclasses.replace(state, deadline=None), []
    due = state.since + program.restart.stable
    if now < due:
        return dataclasses.replace(state, deadline=due), []
    if program.health is not None and not state.healthy:
        return dataclasses.replace(state, deadline=None), []  # its first pass will tell
    new = dataclasses.replace(state, deadline=None, proving=False, retried=False, failures=0,
                              starts=())
    took = format_duration(now - state.since)
    health = " and its health check passed" if program.health is not None else ""
    return new, [emit(new, "stable", f"back: running {took}{health}", 5)]


def restart_after_exit(program: Program, gone: ProgramState, now: float,
                       waiting_for: tuple[str, ...], why: str) -> Result:
    """The instance is gone (and its leftovers): start again now, after a backoff, or give up."""
    if program.user == "session" and not gone.desktop:  # no desktop to restart it in
        return wait_for_desktop(gone, now, restart=True)
    if burst_exceeded(program.restart, gone.starts, now):
        return give_up(program, gone, now, why)
    delay = restart_delay(program.restart, gone.failures)
    wait = program.restart.adopt_within if gone.respawner is not None else 0.0
    if wait > 0:  # its launcher may start the next one itself: that one is adopted
        assert gone.respawner is not None
        wait = max(wait, delay)
        new = replace(gone, Phase.BACKOFF, now, deadline=now + wait, restarting=True,
                      reason=f"{why}; waiting up to {format_duration(wait)} for its launcher, "
                      f"pid {gone.respawner.pid}, to start it again")
        return new, [emit(new, "backoff", new.reason.split("; ", 1)[1])]
    gone = dataclasses.replace(gone, respawner=None)
    if delay <= 0:
        return launch(program, gone, now, waiting_for, restart=True, why=why)
    new = replace(gone, Phase.BACKOFF, now, deadline=now + delay, restarting=True,
                  reason=f"{why}; restarting in {format_duration(delay)}")
    return new, [emit(new, "backoff", f"restarting in {format_duration(delay)}")]


def leftovers_progress(p: Program, s: ProgramState, e: Input, now: float,
                       w: tuple[str, ...]) -> Result:
    """STOPPING after an exit: wait for the leftover family to go, then restart (or stop)."""
    remaining = s.leftovers
    if isinstance(e, Exited):
        remaining = tuple(i for i in remaining if i != e.instance)
    elif isinstance(e, Tick):
        if not s.forced:
            new = dataclasses.replace(s, forced=True, deadline=now + KILL_GRACE)
            return new, [emit(new, "stop_timeout", f"left-behind pids still there after "
                              f"{format_duration(p.stop.timeout)}; sending SIGKILL", 4),
                         *(StopInstance(s.name, i, True) for i in remaining)]
        remaining = ()  # will not die: start anyway, they are never taken for the program
    if remaining:
        return dataclasses.replace(s, leftovers=remaining), []
    done = dataclasses.replace(s, leftovers=(), forced=False)
    if s.stopping_tree:
        return tree_gone(p, dataclasses.replace(done, stopping_tree=False), now, w)
    if not s.then_start:
        new = replace(done, Phase.STOPPED, now, reason="stopped on request")
        return new, [emit(new, "stopped", "stopped, with what it left behind", 5)]
    return restart_after_exit(p, done, now, w, s.last_exit)


def replace(state: ProgramState, phase: Phase, since: float, *,
            deadline: float | None = None, **changes: object) -> ProgramState:
    return dataclasses.replace(state, phase=phase, since=since, deadline=deadline,
                               **changes)  # type: ignore[arg-type]


def stop(program: Program, state: ProgramState, now: float, *, then_start: bool,
         why: str) -> Result:
    if state.instance is None:
        return replace(state, Phase.STOPPED, now, reason=why), [emit(state, "stopped", why)]
    new = replace(state, Phase.STOPPING, now, deadline=now + program.stop.timeout,
                  then_start=then_start, forced=False, reason=why, stopping_tree=True)
    return new, [emit(new, "stopping", why, 5),
                 StopInstance(state.name, state.instance, False, tree=program.family == "stop")]


def tree_gone(program: Program, state: ProgramState, now: float,
              waiting_for: tuple[str, ...]) -> Result:
    """A stop on request is done (the instance and what was left of its tree are gone):
    start again (a restart), or STOPPED."""
    pid = state.instance.pid if state.instance else state.last_stopped
    gone = dataclasses.replace(state, instance=None, stopping_tree=False, last_stopped=None)
    what = f"pid {pid}" if pid is not None else "its launcher"
    if state.then_start and state.failures > 0 and program.health is not None \
            and not state.healthy:  # its health check never passed: back off
        return restart_after_exit(program, dataclasses.replace(gone, restarting=True), now,
                                  waiting_for, f"{what} stopped: its health check never passed")
    if state.then_start:
        return launch(program, gone, now, waiting_for, restart=True,
                      why=f"{what} stopped for restart")
    new = replace(gone, Phase.STOPPED, now, reason="stopped on request")
    return new, [emit(new, "stopped", f"{what} stopped", 5).with_fields(pid=pid)]


RESPAWN_MEMORY = 300.0  # a duplicate's parent stopped this recently that brings one back again
# is a respawner we cannot stop (init, another supervisor): reported, no longer fought


def duplicates(program: Program, state: ProgramState, event: Observed, now: float) -> Result:
    fresh = [d for d in event.duplicates if d not in state.duplicates]
    state = dataclasses.replace(state, duplicates=event.duplicates)
    actions: list[Action] = []
    parents = {dup: (parent, what, loose) for dup, parent, what, loose in event.launchers}
    fought = {parent for parent, when in state.respawned if now - when < RESPAWN_MEMORY}
    main = event.instance.pid if event.instance else "?"
    tree = program.family == "stop"
    for dup in sorted(fresh, key=lambda d: d.create_time, reverse=True):
        parent, what, loose = parents.get(dup, (None, "", False))
        stopping = program.duplicates == "stop"
        if stopping and parent is not None and parent in fought:
            if parent in state.reported:
                continue
            state = dataclasses.replace(state, reported=(*state.reported, parent)[-DEAD_KEPT:])
            actions.append(make_event(
                "duplicate", f"{state.name}: a second instance keeps coming back (now pid "
                f"{dup.pid}, beside pid {main}): {what} starts it again each time it is stopped; "
                "left running, said once", subject=state.name, priority=3, pid=dup.pid,
                restarts=state.restarts))
            continue
        what_now = "stopping it" if stopping else "left running (set duplicates: stop to stop it)"
        if stopping and parent is not None and tree and loose:
            what_now += f" and {what}, which started it"
        actions.append(make_event("duplicate", f"{state.name}: a second instance, pid {dup.pid}, "
                                  f"runs beside pid {main}; {what_now}", subject=state.name,
                                  priority=4,
                                  pid=dup.pid, restarts=state.restarts))
        if stopping:
            if parent is not None:
                kept = tuple((p, w) for p, w in state.respawned if now - w < RESPAWN_MEMORY)
                state = dataclasses.replace(state, respawned=(*kept, (parent, now))[-DEAD_KEPT:])
            if parent is not None and tree and loose:
                actions.append(StopInstance(state.name, parent, False, duplicate=True,
                                            kill_after=program.stop.timeout, tree=True,
                                            signum=TERM))
            actions.append(StopInstance(state.name, dup, False, duplicate=True,
                                        kill_after=program.stop.timeout, tree=tree))
    return state, actions


def remember_dead(state: ProgramState, instance: Instance) -> ProgramState:
    if instance in state.dead:
        return state
    return dataclasses.replace(state, dead=(*state.dead, instance)[-DEAD_KEPT:],
                               duplicates=tuple(d for d in state.duplicates if d != instance))


def without_dead(state: ProgramState, seen: Observed) -> Observed:
    """A process we saw die is never the instance again, whatever a stale cache says."""
    if not state.dead:
        return seen
    instance = seen.instance if seen.instance not in state.dead else None
    duplicates = tuple(d for d in seen.duplicates if d not in state.dead)
    if instance is None and duplicates:
        instance, duplicates = duplicates[0], duplicates[1:]
    return dataclasses.replace(seen, instance=instance, duplicates=duplicates)


def match_text(p: Program) -> str:
    return ", ".join(f"{k}={getattr(p.match, k)!r}" for k in ("name", "exe", "cmdline", "pidfile",
                                                              "user") if getattr(p.match, k))


def host_fatal(p: Program, s: ProgramState, now: float, problem: str) -> Result:
    """This machine cannot start it (script missing mid-upgrade, unsafe, unknown user): FATAL,
    looked at again every HOST_RECHECK and on reload, said once per distinct problem."""
    recheck = min(HOST_RECHECK, p.restart.retry_every)
    new = replace(s, Phase.FATAL, now, deadline=now + recheck, host_problem=problem,
                  script_running=False, reason=f"cannot start: {problem} (checked again every "
                  f"{format_duration(recheck)}, and on reload)")
    if problem == s.host_problem:
        return new, []
    return new, [emit(new, "host_problem", new.reason, 3)]


def stop_launcher(p: Program, s: ProgramState, now: float, e: Command) -> Result:
    """A command while the dead instance's launcher may still start the next one: stop that
    launcher (SIGTERM, SIGKILL at stop.timeout), then stop or start as asked."""
    assert s.respawner is not None
    launcher = s.respawner
    new = replace(s, Phase.STOPPING, now, deadline=now + p.stop.timeout, respawner=None,
                  then_start=e.verb != "stop", forced=False, leftovers=(launcher,),
                  stopping_tree=True, failures=0, starts=(), retrying=False,
                  reason=f"{e.why or e.verb + ' requested'}: stopping its launcher, pid "
                  f"{launcher.pid}, first")
    return new, [emit(new, "stopping", new.reason, 5),
                 StopInstance(s.name, launcher, False, duplicate=True, signum=TERM,
                              tree=p.family == "stop")]
