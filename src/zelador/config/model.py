"""The config as frozen dataclasses: what the rest of zelador reads once `load_config` returns."""

from __future__ import annotations

import math
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
    adopt_within: float = 2.0  # a dead instance's launcher (a shell loop) may start the next
    # one itself: wait this long for it, and adopt it, before running the start script


@dataclass(frozen=True)
class Probe:
    """One look at something: a TCP connect, an HTTP request, or a command (exit 0 = healthy)."""

    kind: str  # "tcp", "http", "command"
    target: str = ""  # host:port (tcp) or URL (http)
    argv: tuple[str, ...] = ()  # command
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    status: tuple[int, ...] = ()  # expected HTTP statuses; empty: any 2xx or 3xx
    body: str | None = None  # a regex the body must match
    timeout: float = 5.0  # always bounded


@dataclass(frozen=True)
class Health:
    """`programs.NAME.health`: the program answers, not only exists."""

    probe: Probe
    every: float = 10.0
    fails: int = 3  # consecutive failures before the action
    start_after: float = 10.0  # after a start, failures are not counted for this long
    action: str = "restart"  # or "alert"


@dataclass(frozen=True)
class Threshold:
    """A rule on one figure: above X for N cycles (or for N of M cycles) -> action."""

    name: str  # the rule's name: the metric for a program, the key under `system:`
    metric: str  # cpu, memory, pss, threads, fds, children, uptime; system: memory, swap,
    # load, cpu, disk, inodes, processes
    above: float = math.inf  # in the metric's unit: %, bytes, a count, seconds, a load
    below: float = -math.inf  # ... or under this (a program's `children`: too few workers)
    cycles: int = 1  # failing in `cycles` of the last `window` samples
    window: int = 1
    span: float | None = None  # `for: 5m`: cycles worked out from the sampling interval
    action: str = "alert"  # or "restart" (a program's), "command"
    command: tuple[str, ...] = ()
    path: str | None = None  # disk, inodes: the mount point
    per_core: bool = False  # load divided by the number of cores
    load: int = 1  # which load average: 1, 5, 15
    children: bool = False  # cpu, memory: the program's processes below it too


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
    session_grace: float = 5.0  # `user: session`: after a login, let the desktop's autostart go
    environment: tuple[tuple[str, str], ...] = ()
    working_directory: str | None = None
    duplicates: str = "report"  # or "stop": stop extra instances, newest first
    family: str = "stop"  # or "keep": leave what a dead instance left behind running
    shell: bool = False
    health: Health | None = None
    resources: tuple[Threshold, ...] = ()
    resources_every: float = 10.0


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
    max_open_runs: int = 100  # started and not ended at once; one more START is refused
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
    keep_bytes: int = 0  # a cap on the bytes the rows take (0: none); the oldest go first


@dataclass(frozen=True)
class Webhook:
    """POST one JSON document per message (docs/alerts.md has its schema)."""

    url: str
    timeout: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Telegram:
    token_file: str
    chat_id: str
    on_recovery: str = "delete"  # or "edit" (the message says it recovered), "send" (a new one)
    timeout: float = 10.0
    api_url: str = "https://api.telegram.org"  # a local Bot API server, or a test's


@dataclass(frozen=True)
class Email:
    host: str
    sender: str  # `from:` in the file
    to: tuple[str, ...]
    port: int = 587
    tls: str = "starttls"  # or "ssl" (port 465), "none" (loopback relays only, when a password is given)
    user: str | None = None
    password_file: str | None = None
    ca_file: str | None = None  # trust this CA as well as the system's (a private relay)
    timeout: float = 30.0


@dataclass(frozen=True)
class Command:
    """Run argv (no shell) with the message as JSON on stdin and ZELADOR_* variables."""

    argv: tuple[str, ...]
    timeout: float = 30.0


@dataclass(frozen=True)
class Alertmanager:
    """Each open incident as an alert in Prometheus' Alertmanager (POST /api/v2/alerts), which
    groups, silences and routes them across the whole fleet (docs/alerts.md)."""

    url: str  # http(s)://am:9093, without /api/v2/alerts
    labels: tuple[tuple[str, str], ...] = ()  # added to every alert: chain, store, ...
    timeout: float = 10.0
    resend: float = 60.0  # an open incident is posted again this often (Alertmanager expects it)


@dataclass(frozen=True)
class Channel:
    name: str
    target: Webhook | Telegram | Email | Command | Alertmanager
    rate: int = 20  # at most `rate` messages per `per` seconds; the rest wait and are grouped
    per: float = 60.0

    @property
    def kind(self) -> str:
        return type(self.target).__name__.lower()


@dataclass(frozen=True)
class Rule:
    """Which problems go to which channels; an empty selector means every one."""

    programs: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    events: tuple[str, ...] = ()  # problem names (gave_up, failed ...); empty: every problem
    channels: tuple[str, ...] = ()  # empty: every channel
    recoveries: bool = True  # also the recovery (and reminders) of what it sends


@dataclass(frozen=True)
class Alerts:
    channels: tuple[Channel, ...] = ()
    rules: tuple[Rule, ...] = ()  # empty: every problem and its recovery to every channel
    group_wait: float = 10.0  # problems within this go out as one message per channel
    remind_every: float | None = None  # while a problem lasts; None: no reminders
    flapping: int = 5  # a program that exits this many times ...
    flapping_window: float = 900.0  # ... within this is flapping (even if each restart worked)
    retry_first: float = 5.0  # a failed send is tried again after this, doubling ...
    retry_max: float = 600.0  # ... up to this
    give_up_after: float = 86400.0  # a message not sent within this is marked failed
    host: str | None = None  # the machine's name in messages; None: its host name

    def channel(self, name: str) -> Channel:
        for chan in self.channels:
            if chan.name == name:
                return chan
        raise KeyError(name)


@dataclass(frozen=True)
class Freshness:
    """Seed 003: a list of items in a JSON answer, each with a last-seen time."""

    items: tuple[str, ...]  # the path to the list, e.g. ("data", "workers")
    key: str  # the field naming each item
    time: str  # the field with its last-seen time (Unix seconds or ISO 8601)
    stale_after: float = 600.0  # quiet longer than this: a problem ...
    ignore_after: float = 8 * 3600.0  # ... until this: then it is gone, not broken


@dataclass(frozen=True)
class HttpCheck:
    """`checks.NAME`: an HTTP endpoint not tied to a program."""

    name: str
    probe: Probe
    every: float = 60.0
    fails: int = 1
    json: Freshness | None = None
    command: tuple[str, ...] = ()  # run on failure and recovery, besides alerting


@dataclass(frozen=True)
class Web:
    """The status page, /api/status and /metrics (off unless `web:` is given)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9813
    auth_file: str | None = None  # `user:password` lines, root-only; required off loopback
    allow_control: bool = False  # restart/stop/start buttons (needs auth_file)
    hosts: tuple[str, ...] = ()  # Host: names answered besides the listen address and localhost


@dataclass(frozen=True)
class Fleet:
    """This terminal's state for a view of the whole chain: in ZooKeeper (seed 004) and/or as
    retained MQTT messages with a Last Will (terminals behind NAT, docs/fleet.md)."""

    zookeeper: str = ""  # host:port,host:port ...; "" : off
    path: str = "/zelador"
    name: str | None = None  # this terminal's name there; None: the host name
    timeout: float = 10.0  # the ZooKeeper session timeout: a dead terminal's node goes after it
    mqtt: str = ""  # mqtt://host[:1883] or mqtts://host[:8883]; "" : off
    topic: str = "zelador"  # TOPIC/hosts/NAME/state and TOPIC/hosts/NAME/online
    keepalive: float = 30.0  # seconds; the broker publishes our Will 1.5 keep-alives after we go
    username: str | None = None
    password_file: str | None = None  # root-only, like every secret
    ca_file: str | None = None  # trust this CA (mqtts); default: the system's
    client_cert: str | None = None  # mqtts client certificate and its key (root-only)
    client_key: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.zookeeper or self.mqtt)


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
    alerts: Alerts = field(default_factory=Alerts)
    checks: tuple[HttpCheck, ...] = ()
    system: tuple[Threshold, ...] = ()
    system_every: float = 10.0
    web: Web = field(default_factory=Web)
    fleet: Fleet = field(default_factory=Fleet)
    warnings: tuple[str, ...] = ()  # host problems found while reading with host_checks=False
    files: tuple[str, ...] = ()  # every file read: the config, then its drop-ins in name order
    sha256: str = ""  # over those files (config/dropins.py identity()): which config runs

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
