"""What the engine works with: program phases, process identity, events in, actions out.

All plain frozen data, so the engine stays pure and a test can build any of it by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

from zelador.events import Event


class Phase(str, enum.Enum):
    UNKNOWN = "UNKNOWN"  # before the first scan
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"  # gave up for now; retried on the slow timer
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"  # stopped on request; not restarted until asked
    WAITING = "WAITING"  # `user: session` and no graphical session to run in: nothing counted


@dataclass(frozen=True)
class Instance:
    """A process, identified by pid *and* start time so a reused pid is never mistaken for it."""

    pid: int
    create_time: float


# --- events: what the shell saw -----------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """A scan's verdict: the program's instance (the oldest match) and any extra matches."""

    instance: Instance | None
    duplicates: tuple[Instance, ...] = ()
    family: int = 0  # processes below the instance (workers, per-connection children ...)
    age: float | None = None  # how long the instance has run, when read (boot clock)
    start: Instance | None = None  # the running start process itself matches: never the
    # instance while it is the start, but a foreground program once the start has settled
    launchers: tuple[tuple[Instance, Instance, str, bool], ...] = ()  # (duplicate, its parent,
    # what the parent is, whether the parent may be stopped with it: nobody else holds it) for
    # each duplicate whose parent is neither zelador nor init


@dataclass(frozen=True)
class Exited:
    """A watched process died (its pidfd turned readable, or we reaped it).

    `leftovers`: its family still alive (orphaned workers maybe holding its port), which is
    never adopted and, unless `family: keep`, is stopped before the program starts again.

    The shell looks at the process table again before it sends this, and says in `successor`
    what it found there now, so a replacement that is already running is adopted, not doubled.
    """

    instance: Instance
    exit_status: int | None = None  # known when we reaped it (zelador is a child subreaper)
    exit_signal: int | None = None
    successor: Instance | None = None
    leftovers: tuple[Instance, ...] = ()
    respawner: Instance | None = None  # its parent, still alive and neither zelador nor init
    # (a vendor's `while :; do prog; done`): it may start a successor itself

    @property
    def how(self) -> str:
        if self.exit_signal is not None:
            return f"was killed by signal {self.exit_signal} ({_signal_name(self.exit_signal)})"
        if self.exit_status is not None:
            return f"exited with status {self.exit_status}"
        return "exited"


_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
                 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
                 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ"}


def _signal_name(number: int) -> str:
    return _SIGNAL_NAMES.get(number, f"signal {number}")


@dataclass(frozen=True)
class ScriptExited:
    returncode: int
    output: str = ""  # the script's last output lines, or where its output went


@dataclass(frozen=True)
class EarlyExit:
    """A process of this program died before any look saw it running (we reaped it)."""

    pid: int
    how: str  # "exited with status 1", "was killed by signal 9 (SIGKILL)"


@dataclass(frozen=True)
class SessionChanged:
    """For `user: session` programs: the graphical session to run in (its id), or none and why."""

    session: str  # "" when there is none
    reason: str = ""


@dataclass(frozen=True)
class Reloaded:
    """The config was reloaded: a program held back by a host problem looks again at once."""


@dataclass(frozen=True)
class LaunchFailed:
    reason: str
    host: bool = False  # a problem on this machine (script missing, unsafe, unknown user)


@dataclass(frozen=True)
class Tick:
    """Time passed; acted on only when the state's deadline is due."""


@dataclass(frozen=True)
class Command:
    verb: str  # "start", "stop" or "restart", from `zelador start|stop|restart NAME`
    why: str = ""  # who asked and why, when not the CLI (a failed health check ...)


@dataclass(frozen=True)
class HealthPassed:
    """The program's health check passed (for its current instance)."""


@dataclass(frozen=True)
class PeerRestarted:
    peer: str  # a program this one is `part_of` was restarted


Input = Union[Observed, Exited, ScriptExited, EarlyExit, LaunchFailed, Tick, Command, PeerRestarted,
              Reloaded, SessionChanged, HealthPassed]


# --- actions: what the shell must do -------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    program: str


@dataclass(frozen=True)
class KillScript:
    """Kill the program's start script and what it started, sparing `spare` and its family."""

    program: str
    spare: Instance | None = None


@dataclass(frozen=True)
class StopInstance:
    program: str
    instance: Instance
    force: bool  # False: the configured stop; True: SIGKILL
    duplicate: bool = False  # a second instance: its stop *signal*, never the stop command,
    kill_after: float | None = None  # ... and SIGKILL after this many seconds if still there
    tree: bool = False  # the whole tree: force kills all of it; a stop remembers all of it, so
    # what is left when the instance is gone comes back as the Exited's leftovers
    signum: int | None = None  # this signal instead of the stop signal (TERM to leftovers)


@dataclass(frozen=True)
class PeersRestart:
    """This program came back after an exit: restart the programs that are `part_of` it."""

    program: str


Action = Union[Launch, KillScript, StopInstance, Event, PeersRestart]  # an Event: tell the sinks


@dataclass(frozen=True)
class ProgramState:
    name: str
    phase: Phase = Phase.UNKNOWN
    instance: Instance | None = None
    since: float = 0.0  # monotonic time the phase (RUNNING: the instance) began
    deadline: float | None = None
    restarts: int = 0  # times the program came back after an exit
    attempts: int = 0  # start scripts launched
    failures: int = 0  # starts in a row that failed or died young
    starts: tuple[float, ...] = ()  # recent start times, for the burst limit
    script_running: bool = False
    script_status: int | None = None
    then_start: bool = False  # STOPPING: start again once it is gone
    forced: bool = False  # STOPPING: SIGKILL already sent
    retrying: bool = False  # this start is FATAL's slow retry
    restarting: bool = False  # this start follows an exit, so part_of peers follow it
    duplicates: tuple[Instance, ...] = ()
    dead: tuple[Instance, ...] = ()  # seen to die, or left over from a dead instance: never adopted
    leftovers: tuple[Instance, ...] = ()  # STOPPING after an exit: the family still to go
    stopping_tree: bool = False  # STOPPING on request: once the tree is gone, stop or restart
    last_stopped: int | None = None  # ... the pid that was stopped, while the rest goes
    respawner: Instance | None = None  # BACKOFF: the dead instance's parent may start another
    start_match: Instance | None = None  # STARTING: the start process itself matches
    respawned: tuple[tuple[Instance, float], ...] = ()  # parents of duplicates we stopped, and
    # when: a duplicate from the same parent again is reported once, not fought in a loop
    reported: tuple[Instance, ...] = ()  # respawning parents already reported
    healthy: bool = False  # RUNNING: its health check has passed for this instance
    proving: bool = False  # RUNNING after failures: not "back" until stable (and healthy)
    retried: bool = False  # ... and this run is FATAL's slow retry: dying young gives up again
    family_size: int = 0
    desktop: str = ""  # `user: session`: the session to run in ("" none) ...
    desktop_missing: str = "no graphical session yet"  # ... and why there is none
    last_exit: str = ""  # how the last instance ended, for `zelador status`
    host_problem: str = ""  # FATAL because of this machine: re-checked quietly, and on reload
    reason: str = ""  # the last thing worth showing in `zelador status`
