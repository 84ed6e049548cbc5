"""The config as frozen dataclasses: what the rest of zelador reads once `load_config` returns."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_PATH = "/etc/zelador/zelador.yaml"


@dataclass(frozen=True)
class Match:
    """How a program's process is recognised; every given criterion must hold."""

    name: str | None = None
    exe: str | None = None
    cmdline: str | None = None  # a regex, searched in the space-joined argv
    pidfile: str | None = None
    user: str | None = None

    def fields(self) -> frozenset[str]:
        """The process attributes this match needs read."""
        return frozenset(k for k in ("name", "exe", "cmdline", "user") if getattr(self, k))


@dataclass(frozen=True)
class Stop:
    signal: int = 15  # SIGTERM (the same number on every Linux architecture)
    timeout: float = 10.0
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Restart:
    delay: float = 0.0  # before the first restart of a program that was running
    max_delay: float = 300.0  # consecutive failures back off 1s, 2s, 4s ... up to this
    stable: float = 10.0  # a process that lived less than this counts as a failure
    burst: int = 10  # more starts than this within `window` ...
    window: float = 120.0
    retry_every: float = 300.0  # ... and we give up (FATAL), retrying on this slow timer


@dataclass(frozen=True)
class Program:
    name: str
    match: Match
    start: tuple[str, ...]
    start_timeout: float = 30.0
    stop: Stop = field(default_factory=Stop)
    restart: Restart = field(default_factory=Restart)
    part_of: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    user: str | None = None
    group: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    working_directory: str | None = None
    duplicates: str = "report"  # or "stop": stop extra instances, newest first
    family: str = "stop"  # or "keep": leave what a dead instance left behind running
    shell: bool = False


@dataclass(frozen=True)
class Control:
    socket: str | None = None  # default: $RUNTIME_DIRECTORY/control.sock
    group: str | None = None  # a group that may use it too (mode 0660)


@dataclass(frozen=True)
class Check:
    """`zelador-check.timer` (rendered by `zelador units`): how often `zelador check` runs."""

    every: float = 60.0
    timeout: float | None = None  # TimeoutStartSec; default: the longest start_timeout + 30s


@dataclass(frozen=True)
class Job:
    """A scheduled job zelador expects reports from (and, with `run`, starts from a timer)."""

    name: str
    cron: str | None = None  # a five-field cron expression ...
    every: float | None = None  # ... or a fixed interval between starts
    timezone: str | None = None  # the cron's zone; None: the machine's local time
    max_runtime: float = 3600.0  # started and not ended within it: TIMEOUT
    grace: float = 600.0  # not started within it of the expected time: MISSED
    id: int | None = None  # the numeric `id=` of the seed's report lines
    run: tuple[str, ...] = ()  # what the rendered timer runs, through `zelador exec`
    user: str | None = None  # who `run` runs as


@dataclass(frozen=True)
class Intake:
    """The TCP report port (seed 002's line protocol)."""

    host: str = "127.0.0.1"
    port: int = 2020
    enabled: bool = True  # `listen: off` turns it off; it is only opened when jobs exist
    allow: tuple[str, ...] = ()  # networks allowed to report when `host` is not loopback
    max_connections: int = 256
    idle_timeout: float = 10.0


@dataclass(frozen=True)
class History:
    """The SQLite history's retention."""

    keep: float = 90 * 86400.0  # rows older than this are deleted
    max_rows: int = 1_000_000  # per table; the oldest go first


@dataclass(frozen=True)
class Config:
    path: str
    interval: float = 10.0
    programs: tuple[Program, ...] = ()
    control: Control = field(default_factory=Control)
    check: Check = field(default_factory=Check)
    jobs: tuple[Job, ...] = ()
    intake: Intake = field(default_factory=Intake)
    history: History = field(default_factory=History)
    warnings: tuple[str, ...] = ()  # host problems found while reading with host_checks=False

    @property
    def check_timeout(self) -> float:
        """How long one `zelador check` may take before systemd ends it."""
        longest = max((p.start_timeout for p in self.programs), default=30.0)
        return self.check.timeout if self.check.timeout is not None else longest + 30.0

    def program(self, name: str) -> Program:
        for prog in self.programs:
            if prog.name == name:
                return prog
        raise KeyError(name)

    def job(self, name: str) -> Job:
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.programs)
