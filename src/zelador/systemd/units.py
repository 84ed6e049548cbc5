"""systemd unit files rendered from the config: the daemon's service, the check timer, job timers.

Pure text: `render_units` returns {file name: content}; `zelador units` prints or writes them.
The files shipped in units/ are this module's output for config/zelador.yaml (a test holds them
equal), so what the package installs and what a sysadmin renders never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zelador.config.model import DEFAULT_PATH, Config, Job
from zelador.jobs.schedule import on_calendar, parse_cron

DEFAULT_EXE = "/usr/bin/zelador"
_PLAIN = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


@dataclass(frozen=True)
class JobTimer:
    """A scheduled job run by a timer of its own (the hook scheduled-job monitoring builds on)."""

    name: str
    command: tuple[str, ...]
    on_calendar: str | None  # systemd's calendar words, e.g. `*-*-* 02:00:00 Europe/Prague` ...
    timeout: float  # TimeoutStartSec: a hung job is ended, and the next run can happen
    every: float | None = None  # ... or an interval from the last start (`every:`)
    user: str | None = None
    persistent: bool = True  # run at boot if a run was missed while the terminal was off
    randomized_delay: float = 0.0  # spread a fleet's runs


def span(seconds: float) -> str:
    """A time span in systemd's syntax, exact to the millisecond."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    if whole and whole % 60 == 0:
        return f"{whole // 60}min"
    return f"{whole}s"


def quote(arg: str) -> str:
    """One argument of an Exec= line: systemd's own quoting, `%` and `$` escaped."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _PLAIN.match(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_line(argv: tuple[str, ...] | list[str]) -> str:
    return " ".join(quote(arg) for arg in argv)


def _zelador(exe: str, verb: str, config_path: str) -> str:
    argv = [exe, verb] if config_path == DEFAULT_PATH else [exe, verb, "--config", config_path]
    return command_line(argv)


def render_service(config_path: str = DEFAULT_PATH, exe: str = DEFAULT_EXE) -> str:
    """The daemon's service: Type=notify, watchdog, restart forever, reload by `zelador reload`."""
    return f"""\
[Unit]
Description=zelador: keeps the point-of-sale vendor daemons (SEFAZ-CE MFE) alive
Documentation=man:zelador(1) file:///usr/share/doc/zelador/operations.md
After=network.target local-fs.target
# Never give up restarting zelador; a broken config (exit 78) is the one thing that stops it:
# `systemctl status zelador` then shows the error with file:line.
StartLimitIntervalSec=0

[Service]
# READY=1 comes after the first scan; STATUS= stays current (see `systemctl status zelador`).
Type=notify
ExecStart={_zelador(exe, "run", config_path)}
# `zelador reload` waits for the verdict: a refused config fails `systemctl reload`.
ExecReload={_zelador(exe, "reload", config_path)}
# The loop itself pings every WatchdogSec/2; a hung loop is killed and restarted.
WatchdogSec=30s
Restart=always
RestartSec=1s
RestartPreventExitStatus=78
# Lock and control socket; history and script logs when journald is not used. Files zelador
# makes are its own (0600): state.json, history.db, alerts.db and their -wal/-shm. Programs it
# starts get umask 022 back. The runtime folder is 0711 so a control.group member reaches the
# socket (0660) by name; nobody else can list or change any of them.
UMask=0077
RuntimeDirectory=zelador
RuntimeDirectoryMode=0711
StateDirectory=zelador
StateDirectoryMode=0700
LogsDirectory=zelador
LogsDirectoryMode=0750
# Every start script runs in a transient scope of its own (systemd-run --scope), so the programs
# are not in this cgroup: stopping, restarting or upgrading zelador leaves them running.
# No sandboxing (ProtectSystem=, PrivateTmp=, DeviceAllow=...): the vendor scripts write under
# /opt/sefaz, reach the MFE's USB serial device and the desktop session's /tmp/.X11-unix, and
# a scope inherits this unit's sandbox.

[Install]
WantedBy=multi-user.target
"""


def render_check(config: Config, config_path: str = DEFAULT_PATH,
                 exe: str = DEFAULT_EXE) -> dict[str, str]:
    """`zelador check` as a oneshot behind a timer: asks the daemon, or does one pass itself."""
    service = f"""\
[Unit]
Description=zelador check: are the watched programs running? (starts them if zelador is not)
Documentation=man:zelador(1) file:///usr/share/doc/zelador/operations.md

[Service]
Type=oneshot
ExecStart={_zelador(exe, "check", config_path)}
# A oneshot has no start timeout of its own: a hung check would stay "activating" and its timer
# would never start it again. This is longer than the longest start_timeout, which zelador
# enforces itself on each start script.
TimeoutStartSec={span(config.check_timeout)}
# Exit 3: something watched is not running; the unit shows as failed until the next good run.
# What it makes (the lock) is its own; programs it starts get umask 022 back.
UMask=0077
"""
    timer = f"""\
[Unit]
Description=Run zelador check every {span(config.check.every)}
Documentation=man:zelador(1) file:///usr/share/doc/zelador/operations.md

[Timer]
OnBootSec={span(config.check.every)}
OnUnitActiveSec={span(config.check.every)}
AccuracySec=1s

[Install]
WantedBy=timers.target
"""
    return {"zelador-check.service": service, "zelador-check.timer": timer}


def render_job(job: JobTimer) -> dict[str, str]:
    """A job's oneshot service and its calendar timer."""
    user = f"User={job.user}\n" if job.user else ""
    service = f"""\
[Unit]
Description=zelador job {job.name}

[Service]
Type=oneshot
ExecStart={command_line(job.command)}
{user}# Always bounded: a hung job is ended and reported, and the timer can start the next run.
TimeoutStartSec={span(job.timeout)}
"""
    delay = f"RandomizedDelaySec={span(job.randomized_delay)}\n" if job.randomized_delay else ""
    if job.on_calendar is not None:
        when = (f"OnCalendar={job.on_calendar}\n"
                f"Persistent={'true' if job.persistent else 'false'}\n")
    else:
        assert job.every is not None
        when = f"OnBootSec={span(job.every)}\nOnUnitActiveSec={span(job.every)}\n"
    timer = f"""\
[Unit]
Description=Schedule of zelador job {job.name}

[Timer]
{when}AccuracySec=1s
{delay}
[Install]
WantedBy=timers.target
"""
    stem = f"zelador-job-{job.name}"
    return {f"{stem}.service": service, f"{stem}.timer": timer}


JOB_TIMEOUT_MARGIN = 30.0


def job_timer(job: Job, config_path: str = DEFAULT_PATH, exe: str = DEFAULT_EXE) -> JobTimer:
    """The timer for a job with `run:`: `zelador exec JOB -- RUN` on the job's schedule.

    TimeoutStartSec= is max_runtime plus 30 s: zelador says TIMEOUT at max_runtime (from the
    report of the start), then systemd ends the hung run, which `zelador exec` reports as killed.
    """
    argv = [exe, "exec", job.name]
    if config_path != DEFAULT_PATH:
        argv += ["--config", config_path]
    if job.user:
        argv += ["--user", job.user]
    argv += ["--", *job.run]
    calendar = on_calendar(parse_cron(job.cron, job.timezone)) if job.cron is not None else None
    return JobTimer(job.name, tuple(argv), calendar, job.max_runtime + JOB_TIMEOUT_MARGIN,
                    every=job.every)


def render_units(config: Config, config_path: str = DEFAULT_PATH,
                 exe: str = DEFAULT_EXE) -> dict[str, str]:
    """Every unit file for this config, by file name (a timer per job with `run:`)."""
    units = {"zelador.service": render_service(config_path, exe)}
    units.update(render_check(config, config_path, exe))
    for job in config.jobs:
        if job.run:
            units.update(render_job(job_timer(job, config_path, exe)))
    return units
