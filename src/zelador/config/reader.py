"""The YAML config, read into frozen dataclasses; every error names `FILE:LINE: KEY`.

The file is composed into PyYAML nodes (not plain dicts) so each value keeps its line.
Validation lives here and only here: once `load_config` returns, the rest of zelador trusts it.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import re
from dataclasses import replace

import yaml

from zelador.config import dropins, keys
from zelador.config.checks import CheckReader
from zelador.config.dropins import Source
from zelador.config.durations import format_duration
from zelador.config.host import read_checked
from zelador.config.model import (
    Alerts,
    Check,
    Config,
    Control,
    Fleet,
    History,
    HttpCheck,
    Intake,
    Program,
    Threshold,
    Web,
)
from zelador.config.programs import PROGRAM_NAME
from zelador.errors import ConfigError, UnsafeFileError
from zelador.fleet.topics import broker_address, is_loopback, valid_topic

# --- reading -------------------------------------------------------------------------------


def load_config(path: str, *, check_files: bool = True, host_checks: bool = True) -> Config:
    """Read and validate `path` and its drop-ins (`zelador.d/*.yaml` beside it, in name order).
    As root, refuse any of them (and start scripts) if non-root can write them.

    `check_files=False` skips every check on the file system (existence, executability, owners)
    so a config can be examined on another machine. `host_checks=False` still checks the config
    files themselves but leaves each program's host (its scripts, user, group) to `host_problem`,
    so the daemon holds back only the program concerned and supervises the others.
    """
    sources = [_source(path, check_files)]
    # A drop-in is read through the same checked walk, which judges its folder on the way: a
    # folder others could write to is refused with the first file in it.
    for name in dropins.dropin_paths(path):
        sources.append(_source(name, check_files))
    root: yaml.Node | None = None
    for source in sources:
        node = dropins.compose(_text(source), source.path)
        if node is None:
            continue  # an empty drop-in adds nothing
        root = node if root is None else dropins.merge(root, node)
    if root is None:
        raise ConfigError("the file is empty; it needs at least `programs:`", file=path)
    reader = _Reader(path, check_files)
    reader.host_checks = host_checks
    config = reader.config(root)
    return replace(config, files=tuple(s.path for s in sources),
                   sha256=dropins.identity(sources))


def _source(path: str, check_files: bool) -> Source:
    try:  # as root, read from the file the walk checked: nothing a non-root user can change
        data = read_checked(path, "config file") if check_files else _read(path)
    except UnsafeFileError as exc:
        raise ConfigError(str(exc), file=path) from exc
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != path else ""
        raise ConfigError(f"cannot read: {exc.strerror}{where}", file=path) from exc
    return Source(path, data)


def _text(source: Source) -> str:
    try:
        return source.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = source.data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{source.data[exc.start]:02x}; save the file as "
                          "UTF-8)", file=source.path, line=line) from None


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def parse_config(text: str, path: str = "<config>", *, check_files: bool = True,
                 host_checks: bool = True) -> Config:
    """One file's text, without drop-ins (tests, and a config examined on its own)."""
    root = dropins.compose(text, path)
    if root is None:
        raise ConfigError("the file is empty; it needs at least `programs:`", file=path)
    reader = _Reader(path, check_files)
    reader.host_checks = host_checks
    return reader.config(root)


class _Reader(CheckReader):
    """Reads the file-level sections; each program's is read by ProgramReader, jobs by JobReader."""

    def config(self, root: yaml.Node) -> Config:
        top = self.mapping(root, "", keys.names(""))
        interval = self.duration(top["interval"], "interval", minimum=0.1) if "interval" in top else 10.0
        if "programs" not in top and "jobs" not in top:
            raise self.error(root, "programs", "missing: list the programs to watch (or jobs:)")
        programs_node = top.get("programs")
        entries = self.mapping(programs_node, "programs", ()) if programs_node else {}
        if programs_node and not entries:
            raise self.error(programs_node, "programs", "empty: list at least one program")
        self._all_names = tuple(entries)
        programs = []
        for name, node in entries.items():
            key = f"programs.{name}"
            if not PROGRAM_NAME.match(name):
                raise self.error(node, key, "a program name may hold only letters, digits, _ . -")
            programs.append(self.with_checks(self.program(name, node, key), node, key))
        control = self.control(top["control"]) if "control" in top else Control()
        self.check_references(programs, entries)
        check = self.check(top["check"], programs) if "check" in top else Check()
        jobs = self.jobs(top["jobs"]) if "jobs" in top else ()
        intake = self.intake(top["intake"]) if "intake" in top else Intake()
        history = self.history(top["history"]) if "history" in top else History()
        checks = self.checks(top["checks"]) if "checks" in top else ()
        system, system_every = self.system(top["system"]) if "system" in top else ((), 10.0)
        names = check_names(programs, checks, system)
        if len(set(names)) != len(names):
            twice = next(n for n in names if names.count(n) > 1)
            raise self.error(top.get("system") or root, "system", f"{twice!r} names both a "
                             "system rule and an HTTP check; rename one")
        alerts = (self.alerts(top["alerts"], programs, jobs, tuple(names)) if "alerts" in top
                  else Alerts())
        web = self.web(top["web"]) if "web" in top else Web()
        fleet = self.fleet(top["fleet"]) if "fleet" in top else Fleet()
        return Config(path=self.path, interval=interval, programs=tuple(programs), control=control,
                      check=check, jobs=jobs, intake=intake, history=history, alerts=alerts,
                      checks=checks, system=system, system_every=system_every, web=web,
                      fleet=fleet,
                      warnings=tuple(self.warnings))

    def fleet(self, node: yaml.Node) -> Fleet:
        entries = self.mapping(node, "fleet", keys.names("fleet"))
        if "zookeeper" not in entries and "mqtt" not in entries:
            raise self.error(node, "fleet", "give zookeeper (e.g. zk1:2181,zk2:2181,zk3:2181) "
                             "and/or mqtt (e.g. mqtts://broker.example.net)")
        values: dict[str, object] = {}
        if "zookeeper" in entries:
            hosts = self.string(entries["zookeeper"], "fleet.zookeeper")
            for part in hosts.split(","):
                host, sep, port = part.strip().rpartition(":")
                if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise self.error(entries["zookeeper"], "fleet.zookeeper", f"{part.strip()!r} "
                                     "is not HOST:PORT (e.g. zk1:2181)")
            values["zookeeper"] = hosts
        if "path" in entries:
            path = self.string(entries["path"], "fleet.path")
            if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", path):
                raise self.error(entries["path"], "fleet.path", f"{path!r} is not an absolute "
                                 "znode path (e.g. /zelador)")
            values["path"] = path
        if "name" in entries:
            name = self.string(entries["name"], "fleet.name")
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise self.error(entries["name"], "fleet.name", f"{name!r}: letters, digits, _ . -")
            values["name"] = name
        if "timeout" in entries:
            values["timeout"] = self.duration(entries["timeout"], "fleet.timeout", minimum=4.0)
        if "mqtt" in entries:
            url = self.string(entries["mqtt"], "fleet.mqtt")
            try:
                broker_address(url)
            except ValueError as exc:
                raise self.error(entries["mqtt"], "fleet.mqtt", str(exc)) from None
            values["mqtt"] = url
        if "topic" in entries:
            topic = self.string(entries["topic"], "fleet.topic")
            if not valid_topic(topic):
                raise self.error(entries["topic"], "fleet.topic", f"{topic!r}: topic levels of "
                                 "letters, digits, _ . - (no wildcards, no leading /)")
            values["topic"] = topic
        if "keepalive" in entries:
            keepalive = self.duration(entries["keepalive"], "fleet.keepalive", minimum=5.0)
            if keepalive > 65535:
                raise self.error(entries["keepalive"], "fleet.keepalive", "at most 65535s (MQTT)")
            values["keepalive"] = keepalive
        if "username" in entries:
            values["username"] = self.string(entries["username"], "fleet.username")
        if "password_file" in entries:
            if "username" not in entries:
                raise self.error(entries["password_file"], "fleet.password_file", "needs "
                                 "fleet.username")
            if "mqtt" in values and str(values["mqtt"]).startswith("mqtt://") and \
                    not is_loopback(broker_address(str(values["mqtt"])).host):
                raise self.error(entries["mqtt"], "fleet.mqtt", "a password would cross the "
                                 "network in clear; use mqtts:// (or a loopback broker)")
            values["password_file"] = self.secret_file(entries["password_file"],
                                                       "fleet.password_file")
        if "ca_file" in entries:
            values["ca_file"] = self.string(entries["ca_file"], "fleet.ca_file")
            if self.check_files and not os.path.isfile(str(values["ca_file"])):
                raise self.error(entries["ca_file"], "fleet.ca_file", "no such file")
        if ("client_cert" in entries) != ("client_key" in entries):
            there = entries.get("client_cert") or entries["client_key"]
            raise self.error(there, "fleet.client_cert", "give client_cert and client_key "
                             "together")
        if "client_cert" in entries:
            values["client_cert"] = self.string(entries["client_cert"], "fleet.client_cert")
            if self.check_files and not os.path.isfile(str(values["client_cert"])):
                raise self.error(entries["client_cert"], "fleet.client_cert", "no such file")
            values["client_key"] = self.secret_file(entries["client_key"], "fleet.client_key")
        for needs_mqtt in ("topic", "keepalive", "username", "ca_file", "client_cert"):
            if needs_mqtt in entries and "mqtt" not in entries:
                raise self.error(entries[needs_mqtt], f"fleet.{needs_mqtt}", "is for MQTT: "
                                 "give fleet.mqtt too")
        return Fleet(**values)  # type: ignore[arg-type]

    def web(self, node: yaml.Node) -> Web:
        entries = self.mapping(node, "web", keys.names("web"))
        values: dict[str, object] = {"enabled": True}
        if "listen" in entries:
            listen = self.scalar(entries["listen"], "web.listen")
            if listen in (False, "off", "no"):
                return Web()
            values["host"], values["port"] = self.address(entries["listen"], listen, "web.listen",
                                                          "127.0.0.1:9813")
        if "auth_file" in entries:
            values["auth_file"] = self.secret_file(entries["auth_file"], "web.auth_file")
        if "allow_control" in entries:
            values["allow_control"] = self.boolean(entries["allow_control"], "web.allow_control")
        if "hosts" in entries:
            hosts = self.names(entries["hosts"], "web.hosts")
            for host in hosts:
                if not re.fullmatch(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]", host):
                    raise self.error(entries["hosts"], "web.hosts", f"{host!r}: a host name or "
                                     "address as a browser sends it in Host:, without the port")
            values["hosts"] = tuple(host.lower() for host in hosts)
        web = Web(**values)  # type: ignore[arg-type]
        if web.allow_control and web.auth_file is None:
            raise self.error(entries["allow_control"], "web.allow_control", "buttons that "
                             "restart programs need web.auth_file (who may press them)")
        if not ipaddress.ip_address(web.host).is_loopback and web.auth_file is None:
            raise self.error(entries.get("listen", node), "web.listen",
                             f"{web.host!r} is not loopback: give web.auth_file (user:password "
                             "lines, chmod 600) so the page is not open to the network")
        return web

    def check(self, node: yaml.Node, programs: list[Program]) -> Check:
        entries = self.mapping(node, "check", keys.names("check"))
        every = self.duration(entries["every"], "check.every", minimum=1.0) if "every" in entries else 60.0
        if "timeout" not in entries:
            return Check(every=every)
        timeout = self.duration(entries["timeout"], "check.timeout", minimum=1.0)
        slowest = max(programs, key=lambda p: p.start_timeout)
        if timeout <= slowest.start_timeout:
            raise self.error(entries["timeout"], "check.timeout",
                             f"{format_duration(timeout)} must be longer than the longest "
                             f"start_timeout ({format_duration(slowest.start_timeout)}, "
                             f"{slowest.name}), or a slow start is cut off mid-way")
        return Check(every=every, timeout=timeout)

    def control(self, node: yaml.Node) -> Control:
        entries = self.mapping(node, "control", keys.names("control"))
        sock = self.string(entries["socket"], "control.socket") if "socket" in entries else None
        group = None
        if "group" in entries:
            group = self.string(entries["group"], "control.group")
            self.known(entries["group"], "control.group", group, grp.getgrnam, "group", host=False)
        return Control(socket=sock, group=group)

    def check_references(self, programs: list[Program], entries: dict[str, yaml.Node]) -> None:
        graph = {prog.name: prog.part_of + prog.after for prog in programs}
        cycle = _find_cycle(graph)
        if cycle:
            raise self.error(entries[cycle[0]], f"programs.{cycle[0]}",
                             "dependency cycle through part_of/after: " + " -> ".join(cycle))


def check_names(programs: list[Program], checks: tuple[HttpCheck, ...],
                system: tuple[Threshold, ...]) -> list[str]:
    """The names checks go by in events and in `alerts.rules[].checks`."""
    names = [c.name for c in checks] + [r.name for r in system]
    for prog in programs:
        if prog.health is not None:
            names.append(f"{prog.name}.health")
        names += [f"{prog.name}.{r.name}" for r in prog.resources]
    return names


def _find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str]:
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
