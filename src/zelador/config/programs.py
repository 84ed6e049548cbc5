"""Reading one program's section (`programs.NAME`): match, start, stop, restart, user ...

Every problem is a `FILE:LINE: KEY: what` ConfigError; a problem of this machine rather than of
the file (a missing script, an unknown user) is a warning instead when `host_checks` is off.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import signal
from typing import Callable

import yaml

from zelador.config import keys
from zelador.config.durations import parse_duration
from zelador.config.host import check_root_only, running_as_root
from zelador.config.model import Match, Program, Restart, Stop
from zelador.config.yamlnodes import NodeReader, close_matches
from zelador.errors import UnsafeFileError

PROGRAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ProgramReader(NodeReader):
    """Reads program sections; the file-level sections are in reader.py."""

    _all_names: tuple[str, ...] = ()
    host_checks = True  # False: problems with scripts, users, groups are warnings (see host_error)

    def __init__(self, path: str, check_files: bool) -> None:
        super().__init__(path, check_files)
        self.warnings: list[str] = []

    def program(self, name: str, node: yaml.Node, key: str) -> Program:
        entries = self.mapping(node, key, keys.names("programs.NAME"))
        if "match" not in entries:
            raise self.error(node, f"{key}.match", "missing: say how to recognise the process "
                             "(e.g. match: {name: Comunicador})")
        if "start" not in entries:
            raise self.error(node, f"{key}.start", "missing: the command that starts it")
        shell = self.boolean(entries["shell"], f"{key}.shell") if "shell" in entries else False
        values: dict[str, object] = {"name": name, "shell": shell}
        values["match"] = self.match(entries["match"], f"{key}.match")
        values["start"] = self.command(entries["start"], f"{key}.start", shell)
        if "start_timeout" in entries:
            values["start_timeout"] = self.duration(entries["start_timeout"],
                                                    f"{key}.start_timeout", minimum=0.1)
        if "stop" in entries:
            values["stop"] = self.stop(entries["stop"], f"{key}.stop", shell)
        if "restart" in entries:
            values["restart"] = self.restart(entries["restart"], f"{key}.restart")
        for dep in ("part_of", "after"):
            if dep in entries:
                values[dep] = self.dependencies(name, entries[dep], f"{key}.{dep}")
        if "user" in entries:
            values["user"] = self.string(entries["user"], f"{key}.user")
            if values["user"] == "session":
                if "group" in entries:
                    raise self.error(entries["group"], f"{key}.group", "cannot be combined with "
                                     "`user: session`: the program runs as the desktop session's "
                                     "user, with that user's own groups")
            else:
                self.known(entries["user"], f"{key}.user", str(values["user"]), pwd.getpwnam,
                           "user")
        if "session_grace" in entries:
            if values.get("user") != "session":
                raise self.error(entries["session_grace"], f"{key}.session_grace", "only with "
                                 "`user: session` (it is the wait after a login)")
            values["session_grace"] = self.duration(entries["session_grace"],
                                                    f"{key}.session_grace")
            if float(values["session_grace"]) > 120:  # type: ignore[arg-type]
                raise self.error(entries["session_grace"], f"{key}.session_grace",
                                 "at most 2m: the cashier is waiting for Monitor")
        if "group" in entries:
            values["group"] = self.string(entries["group"], f"{key}.group")
            self.known(entries["group"], f"{key}.group", str(values["group"]), grp.getgrnam, "group")
        if "environment" in entries:
            values["environment"] = self.environment(entries["environment"], f"{key}.environment")
        if "working_directory" in entries:
            wd_node = entries["working_directory"]
            wd = self.string(wd_node, f"{key}.working_directory")
            if self.check_files and not os.path.isdir(wd):
                raise self.error(wd_node, f"{key}.working_directory", f"{wd!r} is not a directory")
            values["working_directory"] = wd
        for name, choices in (("duplicates", ("report", "stop")), ("family", ("stop", "keep"))):
            if name in entries:
                values[name] = self.choice(entries[name], f"{key}.{name}", choices)
        return Program(**values)  # type: ignore[arg-type]

    def match(self, node: yaml.Node, key: str) -> Match:
        entries = self.mapping(node, key, keys.names("programs.NAME.match"))
        if not entries:
            raise self.error(node, key, "empty: give at least one of name, exe, cmdline, pidfile")
        values = {k: self.string(v, f"{key}.{k}") for k, v in entries.items()}
        if set(values) == {"user"}:
            raise self.error(node, key, "`user` alone would match every process of that user")
        if "cmdline" in values:
            try:
                re.compile(values["cmdline"])
            except re.error as exc:
                raise self.error(entries["cmdline"], f"{key}.cmdline",
                                 f"{values['cmdline']!r} is not a valid regex: {exc}") from exc
        if "name" in values and "/" in values["name"]:
            raise self.error(entries["name"], f"{key}.name", "a process name has no '/' (use exe:)")
        for path_key in ("exe", "pidfile"):
            if path_key in values and not values[path_key].startswith("/"):
                raise self.error(entries[path_key], f"{key}.{path_key}",
                                 f"{values[path_key]!r} must be an absolute path")
        if "user" in values:
            self.known(entries["user"], f"{key}.user", values["user"], pwd.getpwnam, "user")
        return Match(**values)

    def command(self, node: yaml.Node, key: str, shell: bool) -> tuple[str, ...]:
        if isinstance(node, yaml.SequenceNode):
            if shell:
                raise self.error(node, key, "with shell: true give the command as one string")
            argv = tuple(self.string(item, key) for item in node.value)
            if not argv:
                raise self.error(node, key, "empty command")
        else:
            text = self.string(node, key)
            if shell:
                return ("/bin/sh", "-c", text)
            try:
                argv = tuple(shlex.split(text))
            except ValueError as exc:
                raise self.error(node, key, f"{text!r}: {exc}") from exc
            if not argv:
                raise self.error(node, key, "empty command")
        if self.check_files:
            self.executable(node, key, argv[0])
        return argv

    def executable(self, node: yaml.Node, key: str, program: str) -> None:
        if not program.startswith("/"):
            raise self.error(node, key, f"{program!r} must be an absolute path "
                             "(zelador runs nothing through PATH or a shell unless shell: true)")
        if not os.path.exists(program):
            self.host_error(node, key, f"{program!r} does not exist{_did_you_mean(program)}")
        elif not os.path.isfile(program) or not os.access(program, os.X_OK):
            self.host_error(node, key, f"{program!r} is not an executable file "
                            f"(fix: chmod +x {program})")
        elif running_as_root():
            try:
                check_root_only(program, "start script")
            except UnsafeFileError as exc:
                self.host_error(node, key, str(exc))
            except OSError as exc:
                self.host_error(node, key, f"{program!r}: cannot check {exc.filename!r}: "
                                f"{exc.strerror}")

    def host_error(self, node: yaml.Node, key: str, message: str) -> None:
        """A problem of this machine, not of the file: an error, or with host_checks=False a
        warning (the daemon then holds back only that program and re-checks it)."""
        error = self.error(node, key, message)
        if self.host_checks:
            raise error
        self.warnings.append(str(error))

    def stop(self, node: yaml.Node, key: str, shell: bool) -> Stop:
        entries = self.mapping(node, key, keys.names("programs.NAME.stop"))
        values: dict[str, object] = {}
        if "signal" in entries:
            values["signal"] = self.signal(entries["signal"], f"{key}.signal")
        if "timeout" in entries:
            values["timeout"] = self.duration(entries["timeout"], f"{key}.timeout", minimum=0.1)
        if "command" in entries:
            values["command"] = self.command(entries["command"], f"{key}.command", shell)
        return Stop(**values)  # type: ignore[arg-type]

    def signal(self, node: yaml.Node, key: str) -> int:
        value = self.scalar(node, key)
        name = str(value).upper()
        name = name if name.startswith("SIG") else "SIG" + name
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise self.error(node, key, f"{value!r} is not a signal name (e.g. TERM, INT, HUP)") from None

    def restart(self, node: yaml.Node, key: str) -> Restart:
        entries = self.mapping(node, key, keys.names("programs.NAME.restart"))
        values: dict[str, object] = {}
        for name in ("delay", "max_delay", "stable", "adopt_within"):
            if name in entries:
                values[name] = self.duration(entries[name], f"{key}.{name}")
        if "burst" in entries:
            text = str(self.scalar(entries["burst"], f"{key}.burst"))
            found = re.fullmatch(r"\s*(\d+)\s+in\s+(.+)", text)
            if not found or int(found.group(1)) < 1:
                raise self.error(entries["burst"], f"{key}.burst",
                                 f"{text!r} is not `COUNT in SPAN` (e.g. 5 in 2m)")
            values["burst"] = int(found.group(1))
            values["window"] = self._span(entries["burst"], f"{key}.burst", found.group(2))
        if "then" in entries:
            text = str(self.scalar(entries["then"], f"{key}.then"))
            found = re.fullmatch(r"\s*retry every\s+(.+)", text)
            if not found:
                raise self.error(entries["then"], f"{key}.then",
                                 f"{text!r} is not `retry every SPAN` (giving up forever is not "
                                 "offered: a program we gave up on is retried slowly)")
            values["retry_every"] = self._span(entries["then"], f"{key}.then", found.group(1))
        return Restart(**values)  # type: ignore[arg-type]

    def _span(self, node: yaml.Node, key: str, text: str) -> float:
        try:
            seconds = parse_duration(text)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from exc
        if seconds <= 0:
            raise self.error(node, key, f"{text!r} must be longer than 0s")
        return seconds

    def environment(self, node: yaml.Node, key: str) -> tuple[tuple[str, str], ...]:
        entries = self.mapping(node, key, ())
        pairs = []
        for name, value_node in entries.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise self.error(value_node, f"{key}.{name}", "not a valid variable name")
            value = self.scalar(value_node, f"{key}.{name}")
            text = ("true" if value else "false") if isinstance(value, bool) else value
            pairs.append((name, "" if text is None else str(text)))
        return tuple(pairs)

    def known(self, node: yaml.Node, key: str, name: str,
              lookup: Callable[[str], object], what: str, host: bool = True) -> None:
        if not self.check_files:
            return
        try:
            lookup(name)
        except KeyError:
            if host:
                self.host_error(node, key, f"no {what} {name!r} on this machine")
            else:
                raise self.error(node, key, f"no {what} {name!r} on this machine") from None

    def dependencies(self, name: str, node: yaml.Node, key: str) -> tuple[str, ...]:
        deps = self.names(node, key)
        for dep in deps:
            if dep == name:
                raise self.error(node, key, "a program cannot depend on itself")
            if dep not in self._all_names:
                hint = close_matches(dep, self._all_names, n=1)
                fix = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.error(node, key, f"{dep!r} is not a program in this file{fix}")
        return deps


def _did_you_mean(path: str) -> str:
    folder, base = os.path.split(path)
    try:
        siblings = os.listdir(folder or ".")
    except OSError:
        return f" (nor does its folder {folder!r})" if folder else ""
    hint = close_matches(base, siblings, n=1)
    return f" (did you mean {hint[0]}?)" if hint else ""

