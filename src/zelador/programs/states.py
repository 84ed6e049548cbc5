"""What the engine works with: program phases, process identity, events in, actions out.

All plain frozen data, so the engine stays pure and a test can build any of it by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union


class Phase(str, enum.Enum):
    UNKNOWN = "UNKNOWN"  # before the first scan
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"  # gave up for now; retried on the slow timer
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"  # stopped on request; not restarted until asked


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


@dataclass(frozen=True)
class Exited:
    instance: Instance


@dataclass(frozen=True)
class ScriptExited:
    returncode: int


@dataclass(frozen=True)
class LaunchFailed:
    reason: str


@dataclass(frozen=True)
class Tick:
    """Time passed; acted on only when the state's deadline is due."""


@dataclass(frozen=True)
class Command:
    verb: str  # "start", "stop" or "restart", from `zelador start|stop|restart NAME`


@dataclass(frozen=True)
class PeerRestarted:
    peer: str  # a program this one is `part_of` was restarted


Event = Union[Observed, Exited, ScriptExited, LaunchFailed, Tick, Command, PeerRestarted]


# --- actions: what the shell must do -------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    program: str


@dataclass(frozen=True)
class KillScript:
    program: str


@dataclass(frozen=True)
class StopInstance:
    program: str
    instance: Instance
    force: bool  # False: the configured stop; True: SIGKILL


@dataclass(frozen=True)
class Emit:
    """One decision, for the journal: `kind` becomes ZELADOR_EVENT."""

    kind: str
    program: str
    message: str
    pid: int | None = None
    restarts: int = 0
    priority: int = 6  # syslog: 3 err, 4 warning, 5 notice, 6 info


@dataclass(frozen=True)
class PeersRestart:
    """This program came back after an exit: restart the programs that are `part_of` it."""

    program: str


Action = Union[Launch, KillScript, StopInstance, Emit, PeersRestart]


@dataclass(frozen=True)
class ProgramState:
    name: str
    phase: Phase = Phase.UNKNOWN
    instance: Instance | None = None
    since: float = 0.0  # monotonic time the phase (RUNNING: the instance) began
    deadline: float | None = None
    restarts: int = 0
    failures: int = 0  # starts in a row that failed or died young
    starts: tuple[float, ...] = ()  # recent start times, for the burst limit
    script_running: bool = False
    script_status: int | None = None
    then_start: bool = False  # STOPPING: start again once it is gone
    forced: bool = False  # STOPPING: SIGKILL already sent
    retrying: bool = False  # this start is FATAL's slow retry
    restarting: bool = False  # this start follows an exit, so part_of peers follow it
    duplicates: tuple[Instance, ...] = ()
    reason: str = ""  # the last thing worth showing in `zelador status`
