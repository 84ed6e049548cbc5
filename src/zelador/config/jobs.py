"""Reading `jobs:`, `intake:` and `history:`: scheduled jobs, the report port, the history store.

Kept apart from the program sections: a job has a schedule and reports, not a process to match.
Every problem is a `FILE:LINE: KEY: what` ConfigError, like the rest of the file.
"""

from __future__ import annotations

import ipaddress
import pwd
import re

import yaml

from zelador.config import keys
from zelador.config.model import History, Intake, Job
from zelador.config.programs import PROGRAM_NAME, ProgramReader
from zelador.jobs.schedule import ScheduleError, on_calendar, parse_cron, zone_of

_OFF = (False, "off", "no")


class JobReader(ProgramReader):
    """Reads the job-related top-level sections; reader.py calls in."""

    def jobs(self, node: yaml.Node) -> tuple[Job, ...]:
        entries = self.mapping(node, "jobs", ())
        jobs: list[Job] = []
        ids: dict[int, str] = {}
        for name, job_node in entries.items():
            key = f"jobs.{name}"
            if not PROGRAM_NAME.match(name):
                raise self.error(job_node, key, "a job name may hold only letters, digits, _ . -")
            job = self.job(name, job_node, key)
            if job.id is not None:
                if job.id in ids:
                    raise self.error(job_node, f"{key}.id", f"{job.id} is also the id of job "
                                     f"{ids[job.id]!r}; a report's id= must name one job")
                ids[job.id] = name
            jobs.append(job)
        return tuple(jobs)

    def job(self, name: str, node: yaml.Node, key: str) -> Job:
        entries = self.mapping(node, key, keys.names("jobs.NAME"))
        values: dict[str, object] = {"name": name}
        if ("schedule" in entries) == ("every" in entries):
            raise self.error(node, key, "give exactly one of `schedule` (cron, e.g. \"30 2 * * *\") "
                             "and `every` (an interval, e.g. 1h)")
        zone = None
        if "timezone" in entries:
            zone = self.string(entries["timezone"], f"{key}.timezone")
            try:
                zone_of(zone)
            except ScheduleError as exc:
                raise self.error(entries["timezone"], f"{key}.timezone", str(exc)) from None
            if "every" in entries:
                raise self.error(entries["timezone"], f"{key}.timezone",
                                 "only a cron `schedule` has a time zone; `every` counts from "
                                 "the last start")
        if "schedule" in entries:
            text = self.scalar(entries["schedule"], f"{key}.schedule")
            if not isinstance(text, str):
                raise self.error(entries["schedule"], f"{key}.schedule", f"{text!r}: quote the "
                                 "cron expression, e.g. \"30 2 * * *\"")
            try:
                parse_cron(text, zone)
            except ScheduleError as exc:
                raise self.error(entries["schedule"], f"{key}.schedule", str(exc)) from None
            values["cron"] = text
            values["timezone"] = zone
        else:
            values["every"] = self.duration(entries["every"], f"{key}.every", minimum=1.0)
        for span in ("max_runtime", "grace"):
            if span in entries:
                values[span] = self.duration(entries[span], f"{key}.{span}", minimum=1.0)
        if "max_open_runs" in entries:
            values["max_open_runs"] = self.count(entries["max_open_runs"],
                                                 f"{key}.max_open_runs", 1, 1000)
        if "id" in entries:
            ident = self.scalar(entries["id"], f"{key}.id")
            if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident < 2**31:
                raise self.error(entries["id"], f"{key}.id", f"{ident!r} is not a whole number "
                                 "(the seed's id=, e.g. 25)")
            values["id"] = ident
        shell = self.boolean(entries["shell"], f"{key}.shell") if "shell" in entries else False
        if "run" in entries:
            values["run"] = self.command(entries["run"], f"{key}.run", shell)
            if "schedule" in entries:
                try:
                    on_calendar(parse_cron(str(values["cron"]), zone))
                except ScheduleError as exc:
                    raise self.error(entries["schedule"], f"{key}.schedule",
                                     f"{exc} (`run:` needs a systemd timer)") from None
        elif shell:
            raise self.error(entries["shell"], f"{key}.shell", "only means something with `run:`")
        if "user" in entries:
            user = self.string(entries["user"], f"{key}.user")
            self.known(entries["user"], f"{key}.user", user, pwd.getpwnam, "user", host=False)
            values["user"] = user
        return Job(**values)  # type: ignore[arg-type]

    def intake(self, node: yaml.Node) -> Intake:
        entries = self.mapping(node, "intake", keys.names("intake"))
        values: dict[str, object] = {}
        if "listen" in entries:
            listen = self.scalar(entries["listen"], "intake.listen")
            if listen in _OFF:
                values["enabled"] = False
            else:
                values["host"], values["port"] = self.address(entries["listen"], listen,
                                                              "intake.listen", "127.0.0.1:2020")
        if "allow" in entries:
            networks = self.names(entries["allow"], "intake.allow")
            for net in networks:
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise self.error(entries["allow"], "intake.allow", f"{net!r} is not an "
                                     "address or network (e.g. 10.0.0.0/8)") from None
            values["allow"] = networks
        if "max_connections" in entries:
            values["max_connections"] = self.count(entries["max_connections"],
                                                   "intake.max_connections", 1, 10000)
        if "idle_timeout" in entries:
            values["idle_timeout"] = self.duration(entries["idle_timeout"], "intake.idle_timeout",
                                                   minimum=0.1)
        intake = Intake(**values)  # type: ignore[arg-type]
        if intake.enabled and not _loopback(intake.host) and not intake.allow:
            raise self.error(entries.get("listen", node), "intake.listen",
                             f"{intake.host!r} is not loopback: say which networks may report "
                             "with intake.allow (e.g. [10.0.0.0/8])")
        return intake

    def address(self, node: yaml.Node, value: object, key: str,
                example: str) -> tuple[str, int]:
        text = str(value)
        host, sep, port = text.rpartition(":")
        host = host.strip("[]") if sep else "127.0.0.1"
        port = port if sep else text
        try:
            ipaddress.ip_address(host)
            number = int(port)
            if not 0 < number < 65536:
                raise ValueError
        except ValueError:
            raise self.error(node, key, f"{text!r} is not ADDRESS:PORT (e.g. {example}) or "
                             "off") from None
        return host, number

    def count(self, node: yaml.Node, key: str, low: int, high: int) -> int:
        value = self.scalar(node, key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(node, key, f"{value!r} is not a whole number from {low} to {high}")
        return value

    def history(self, node: yaml.Node) -> History:
        entries = self.mapping(node, "history", keys.names("history"))
        values: dict[str, object] = {}
        if "keep" in entries:
            values["keep"] = self.duration(entries["keep"], "history.keep", minimum=3600.0)
        if "max_rows" in entries:
            values["max_rows"] = self.count(entries["max_rows"], "history.max_rows", 1000,
                                            100_000_000)
        if "keep_bytes" in entries:
            values["keep_bytes"] = self.size(entries["keep_bytes"], "history.keep_bytes")
        return History(**values)  # type: ignore[arg-type]

    def size(self, node: yaml.Node, key: str) -> int:
        """A byte count: 52428800, 50M, 50MB, 50MiB (K, M, G are powers of 1024); at least 1M."""
        value = self.scalar(node, key)
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", str(value), re.I)
        if isinstance(value, bool) or not found:
            raise self.error(node, key, f"{value!r} is not a size (e.g. 50MB, 1G)")
        size = int(float(found.group(1)) * 1024 ** " KMG".index(found.group(2).upper() or " "))
        if size < 1024 * 1024:
            raise self.error(node, key, f"{value!r} is too small (at least 1MB)")
        return size


def _loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback
