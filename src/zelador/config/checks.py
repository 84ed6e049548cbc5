"""Reading checks: `programs.NAME.health` and `.resources`, `checks:` (HTTP), `system:`.

Every check has a timeout whether or not the file gives one, and every threshold names its unit
(`500MB`, `90%`): a bare `500` for memory is refused rather than guessed.
"""

from __future__ import annotations

import dataclasses
import re

import yaml

from zelador.checks.metrics import PROGRAM_METRICS, SYSTEM_METRICS, parse_value
from zelador.config import keys
from zelador.config.alerts import AlertReader
from zelador.config.model import Freshness, Health, HttpCheck, Probe, Program, Threshold
from zelador.config.yamlnodes import close_matches

SYSTEM_ARGS = {"memory": ("used",), "swap": ("used",), "cpu": ("used",), "processes": ("count",),
               "load": ("1", "5", "15")}
MAX_TIMEOUT = 300.0


class CheckReader(AlertReader):
    """Reads the check sections; reader.py calls in."""

    def with_checks(self, program: Program, node: yaml.Node, key: str) -> Program:
        entries = self.mapping(node, key, ())
        values: dict[str, object] = {}
        if "health" in entries:
            values["health"] = self.health(entries["health"], f"{key}.health")
        if "resources" in entries:
            where = f"{key}.resources"
            rules = self.mapping(entries["resources"], where,
                                 keys.names("programs.NAME.resources"))
            if "every" in rules:
                values["resources_every"] = self.duration(rules["every"], f"{where}.every",
                                                          minimum=0.5)
            values["resources"] = tuple(
                self.threshold(metric, metric, rule, f"{where}.{metric}", program=True)
                for metric, rule in rules.items() if metric != "every")
        return dataclasses.replace(program, **values) if values else program  # type: ignore[arg-type]

    def health(self, node: yaml.Node, key: str) -> Health:
        entries = self.mapping(node, key, keys.names("programs.NAME.health"))
        kinds = [k for k in ("http", "tcp", "command") if k in entries]
        if len(kinds) != 1:
            raise self.error(node, key, "give exactly one of http (a URL), tcp (HOST:PORT) and "
                             "command" + (f" (got {', '.join(kinds)})" if kinds else ""))
        timeout = (self.check_timeout(entries["timeout"], f"{key}.timeout") if "timeout" in
                   entries else 5.0)
        probe = self.probe(kinds[0], entries[kinds[0]], f"{key}.{kinds[0]}", timeout)
        values: dict[str, object] = {"probe": probe}
        if "every" in entries:
            values["every"] = self.duration(entries["every"], f"{key}.every", minimum=0.1)
        if "fails" in entries:
            values["fails"] = self.count(entries["fails"], f"{key}.fails", 1, 1000)
        if "start_after" in entries:
            values["start_after"] = self.duration(entries["start_after"], f"{key}.start_after")
        if "action" in entries:
            values["action"] = self.choice(entries["action"], f"{key}.action",
                                           ("restart", "alert"))
        return Health(**values)  # type: ignore[arg-type]

    def probe(self, kind: str, node: yaml.Node, key: str, timeout: float) -> Probe:
        if kind == "command":
            return Probe("command", argv=self.command(node, key, False), timeout=timeout)
        if kind == "tcp":
            text = str(self.scalar(node, key))
            host, sep, port = text.rpartition(":")
            if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
                raise self.error(node, key, f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8098)")
            return Probe("tcp", target=f"{host.strip('[]')}:{port}", timeout=timeout)
        return self.http_probe(node, key, timeout)

    def http_probe(self, node: yaml.Node, key: str, timeout: float) -> Probe:
        if isinstance(node, yaml.ScalarNode):
            return Probe("http", target=self.url(node, key), timeout=timeout)
        entries = self.mapping(node, key, keys.names("programs.NAME.health.http"))
        if "url" not in entries:
            raise self.error(node, f"{key}.url", "missing (e.g. http://127.0.0.1:8098/)")
        values: dict[str, object] = {"kind": "http", "target": self.url(entries["url"],
                                                                        f"{key}.url"),
                                     "timeout": timeout}
        if "timeout" in entries:
            values["timeout"] = self.check_timeout(entries["timeout"], f"{key}.timeout")
        if "method" in entries:
            values["method"] = self.choice(entries["method"], f"{key}.method",
                                           ("GET", "HEAD", "POST"))
        if "headers" in entries:
            values["headers"] = self.headers(entries["headers"], f"{key}.headers")
        if "status" in entries:
            raw = entries["status"]
            items = raw.value if isinstance(raw, yaml.SequenceNode) else [raw]
            codes = tuple(self.count(item, f"{key}.status", 100, 599) for item in items)
            values["status"] = codes
        if "body" in entries:
            pattern = self.string(entries["body"], f"{key}.body")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.error(entries["body"], f"{key}.body", f"{pattern!r} is not a "
                                 f"regular expression: {exc}") from None
            values["body"] = pattern
        return Probe(**values)  # type: ignore[arg-type]

    def check_timeout(self, node: yaml.Node, key: str) -> float:
        seconds = self.duration(node, key, minimum=0.05)
        if seconds > MAX_TIMEOUT:
            raise self.error(node, key, "more than 5m: a check that slow is a failed check")
        return seconds

    def threshold(self, name: str, metric: str, node: yaml.Node, key: str, *,
                  program: bool) -> Threshold:
        table = PROGRAM_METRICS if program else SYSTEM_METRICS
        entries = self.mapping(node, key, keys.names("programs.NAME.resources.FIGURE" if program
                                                     else "system.NAME"))
        values: dict[str, object] = {"name": name, "metric": metric}
        if not program:
            given = [m for m in SYSTEM_METRICS if m in entries]
            if len(given) != 1:
                hint = close_matches(name, SYSTEM_METRICS)
                raise self.error(node, key, "give the figure: one of " + ", ".join(SYSTEM_METRICS)
                                 + (f" (got {', '.join(given)})" if given else
                                    f" (did you mean {hint[0]}: ...?)" if hint else ""))
            metric = values["metric"] = given[0]
            self.system_argument(metric, entries[metric], f"{key}.{metric}", values)
        if "below" in entries and not (program and metric == "children"):
            raise self.error(entries["below"], f"{key}.below", "only means something for a "
                             "program's children (at least N processes below it)")
        if "above" not in entries and "below" not in entries:
            raise self.error(node, f"{key}.above", "missing: the threshold (e.g. above: 90%)")
        unit = table[metric]
        for side in ("above", "below"):
            if side in entries:
                try:
                    values[side] = parse_value(unit, self.scalar(entries[side], f"{key}.{side}"))
                except ValueError as exc:
                    raise self.error(entries[side], f"{key}.{side}", str(exc)) from None
        if "for" in entries:
            self.for_clause(entries["for"], f"{key}.for", values)
        if "children" in entries:
            if not (program and metric in ("cpu", "memory")):
                raise self.error(entries["children"], f"{key}.children", "only means something "
                                 "for a program's cpu or memory")
            values["children"] = self.boolean(entries["children"], f"{key}.children")
        if "per_core" in entries:
            if metric != "load":
                raise self.error(entries["per_core"], f"{key}.per_core", "only means something "
                                 "for load")
            values["per_core"] = self.boolean(entries["per_core"], f"{key}.per_core")
        actions = ("alert", "restart", "command") if program else ("alert", "command")
        action = self.choice(entries["action"], f"{key}.action", actions) if "action" in entries \
            else "alert"
        values["action"] = action
        if "command" in entries:
            values["command"] = self.command(entries["command"], f"{key}.command", False)
        elif action == "command":
            raise self.error(node, f"{key}.command", "missing: what `action: command` runs")
        return Threshold(**values)  # type: ignore[arg-type]

    def system_argument(self, metric: str, node: yaml.Node, key: str,
                        values: dict[str, object]) -> None:
        value = str(self.scalar(node, key))
        if metric in ("disk", "inodes"):
            if not value.startswith("/"):
                raise self.error(node, key, f"{value!r}: give a mount point (e.g. /)")
            values["path"] = value
            return
        choices = SYSTEM_ARGS[metric]
        if value not in choices:
            raise self.error(node, key, f"{value!r} is not one of {', '.join(choices)}")
        if metric == "load":
            values["load"] = int(value)

    def for_clause(self, node: yaml.Node, key: str, values: dict[str, object]) -> None:
        text = str(self.scalar(node, key)).strip()
        cycles = re.fullmatch(r"(\d+)\s+cycles?", text)
        of = re.fullmatch(r"(\d+)\s+of\s+(\d+)\s+cycles", text)
        if cycles:
            values["cycles"] = values["window"] = int(cycles.group(1))
        elif of:
            values["cycles"], values["window"] = int(of.group(1)), int(of.group(2))
        else:
            try:
                values["span"] = self.duration(node, key, minimum=0.1)
                return
            except Exception:
                raise self.error(node, key, f"{text!r} is not `N cycles`, `X of Y cycles` or a "
                                 "time span (e.g. 5m)") from None
        if not 1 <= int(values["cycles"]) <= int(values["window"]) <= 10000:  # type: ignore[call-overload]
            raise self.error(node, key, f"{text!r}: X of Y needs 1 <= X <= Y")

    def checks(self, node: yaml.Node) -> tuple[HttpCheck, ...]:
        entries = self.mapping(node, "checks", ())
        out = []
        for name, check_node in entries.items():
            key = f"checks.{name}"
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
                raise self.error(check_node, key, "a check name may hold only letters, digits, "
                                 "_ . -")
            out.append(self.http_check(name, check_node, key))
        return tuple(out)

    def http_check(self, name: str, node: yaml.Node, key: str) -> HttpCheck:
        entries = self.mapping(node, key, keys.names("checks.NAME"))
        if "http" not in entries:
            raise self.error(node, f"{key}.http", "missing: the URL to ask (e.g. http: "
                             "{url: \"http://127.0.0.1:8097/api\", timeout: 2s})")
        timeout = (self.check_timeout(entries["timeout"], f"{key}.timeout") if "timeout" in
                   entries else 10.0)
        values: dict[str, object] = {"name": name,
                                     "probe": self.http_probe(entries["http"], f"{key}.http",
                                                              timeout)}
        if "every" in entries:
            values["every"] = self.duration(entries["every"], f"{key}.every", minimum=0.5)
        if "fails" in entries:
            values["fails"] = self.count(entries["fails"], f"{key}.fails", 1, 1000)
        if "json" in entries:
            values["json"] = self.freshness(entries["json"], f"{key}.json")
        if "command" in entries:
            values["command"] = self.command(entries["command"], f"{key}.command", False)
        return HttpCheck(**values)  # type: ignore[arg-type]

    def freshness(self, node: yaml.Node, key: str) -> Freshness:
        entries = self.mapping(node, key, keys.names("checks.NAME.json"))
        for needed, example in (("items", "data.workers"), ("key", "name"), ("time", "last_seen")):
            if needed not in entries:
                raise self.error(node, f"{key}.{needed}", f"missing (e.g. {example})")
        path = self.string(entries["items"], f"{key}.items")
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", path):
            raise self.error(entries["items"], f"{key}.items", f"{path!r} is not a dotted path "
                             "to a list (e.g. data.workers)")
        values: dict[str, object] = {"items": tuple(path.split(".")),
                                     "key": self.string(entries["key"], f"{key}.key"),
                                     "time": self.string(entries["time"], f"{key}.time")}
        for span in ("stale_after", "ignore_after"):
            if span in entries:
                values[span] = self.duration(entries[span], f"{key}.{span}", minimum=1.0)
        fresh = Freshness(**values)  # type: ignore[arg-type]
        if fresh.ignore_after <= fresh.stale_after:
            raise self.error(node, f"{key}.ignore_after", "must be longer than stale_after")
        return fresh

    def system(self, node: yaml.Node) -> tuple[tuple[Threshold, ...], float]:
        entries = self.mapping(node, "system", ())
        every = 10.0
        rules = []
        for name, rule_node in entries.items():
            if name in keys.names("system"):  # every; any other key names a rule
                every = self.duration(rule_node, "system.every", minimum=0.5)
                continue
            rules.append(self.threshold(name, "", rule_node, f"system.{name}", program=False))
        return tuple(rules), every
