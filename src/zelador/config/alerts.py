"""Reading `alerts:`: channels (webhook, telegram, email, command), rules, timings.

Secrets (a Telegram token, an SMTP password) are only ever read from files, which must be
root-only when zelador runs as root: a token in the YAML would be readable by whoever reads the
config, and a token file others can read is the same leak.
"""

from __future__ import annotations

import os
import re
import stat
from urllib.parse import urlsplit

import yaml

from zelador.alerts.problems import ALL_PROBLEMS, PROBLEMS
from zelador.config import keys
from zelador.config.host import open_checked, running_as_root
from zelador.config.jobs import JobReader
from zelador.config.model import (
    Alertmanager,
    Alerts,
    Channel,
    Command,
    Email,
    Job,
    Program,
    Rule,
    Telegram,
    Webhook,
)
from zelador.config.yamlnodes import close_matches
from zelador.errors import UnsafeFileError
from zelador.fleet.topics import is_loopback

CHANNEL_KINDS = ("webhook", "telegram", "email", "command", "alertmanager")
RESERVED_LABELS = ("alertname", "instance", "program", "job", "check")
_ADDRESS = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+$")
_OFF = (False, "off", "no", "never")


class AlertReader(JobReader):
    """Reads `alerts:`; reader.py calls in once programs and jobs are known."""

    def alerts(self, node: yaml.Node, programs: list[Program], jobs: tuple[Job, ...],
               checks: tuple[str, ...] = ()) -> Alerts:
        entries = self.mapping(node, "alerts", keys.names("alerts"))
        values: dict[str, object] = {}
        channels = self.channels(entries["channels"]) if "channels" in entries else ()
        values["channels"] = channels
        if "rules" in entries:
            values["rules"] = self.rules(entries["rules"], channels, programs, jobs, checks)
        if "group_wait" in entries:
            values["group_wait"] = self.duration(entries["group_wait"], "alerts.group_wait")
        if "remind_every" in entries:
            raw = self.scalar(entries["remind_every"], "alerts.remind_every")
            if raw not in _OFF:
                values["remind_every"] = self.duration(entries["remind_every"],
                                                       "alerts.remind_every", minimum=60.0)
        if "flapping" in entries:
            values["flapping"], values["flapping_window"] = self.count_in(
                entries["flapping"], "alerts.flapping", "5 in 15m")
        if "retry" in entries:
            values["retry_first"], values["retry_max"] = self.retry(entries["retry"])
        if "give_up_after" in entries:
            values["give_up_after"] = self.duration(entries["give_up_after"],
                                                    "alerts.give_up_after", minimum=60.0)
        if "host" in entries:
            values["host"] = self.string(entries["host"], "alerts.host")
        return Alerts(**values)  # type: ignore[arg-type]

    def channels(self, node: yaml.Node) -> tuple[Channel, ...]:
        entries = self.mapping(node, "alerts.channels", ())
        out = []
        for name, chan_node in entries.items():
            key = f"alerts.channels.{name}"
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
                raise self.error(chan_node, key, "a channel name may hold only letters, digits, "
                                 "_ . -")
            out.append(self.channel(name, chan_node, key))
        return tuple(out)

    def channel(self, name: str, node: yaml.Node, key: str) -> Channel:
        entries = self.mapping(node, key, keys.names("alerts.channels.NAME"))
        kinds = [k for k in CHANNEL_KINDS if k in entries]
        if len(kinds) != 1:
            raise self.error(node, key, "give exactly one of " + ", ".join(CHANNEL_KINDS) +
                             (f" (got {', '.join(kinds)})" if kinds else ""))
        kind = kinds[0]
        where = f"{key}.{kind}"
        target: Webhook | Telegram | Email | Command | Alertmanager
        if kind == "alertmanager":
            target = self.alertmanager(entries[kind], where)
        elif kind == "webhook":
            target = self.webhook(entries[kind], where)
        elif kind == "telegram":
            target = self.telegram(entries[kind], where)
        elif kind == "email":
            target = self.email(entries[kind], where)
        else:
            target = self.alert_command(entries[kind], where)
        values: dict[str, object] = {"name": name, "target": target}
        if "rate_limit" in entries:
            values["rate"], values["per"] = self.count_in(entries["rate_limit"],
                                                          f"{key}.rate_limit", "20 in 1m")
        return Channel(**values)  # type: ignore[arg-type]

    def webhook(self, node: yaml.Node, key: str) -> Webhook:
        if isinstance(node, yaml.ScalarNode):
            return Webhook(url=self.url(node, key))
        entries = self.mapping(node, key, keys.names("alerts.channels.NAME.webhook"))
        if "url" not in entries:
            raise self.error(node, f"{key}.url", "missing: where to POST (e.g. "
                             "http://127.0.0.1:8099/zelador)")
        values: dict[str, object] = {"url": self.url(entries["url"], f"{key}.url")}
        if "timeout" in entries:
            values["timeout"] = self.timeout(entries["timeout"], f"{key}.timeout")
        if "headers" in entries:
            values["headers"] = self.headers(entries["headers"], f"{key}.headers")
        return Webhook(**values)  # type: ignore[arg-type]

    def am_url(self, node: yaml.Node, key: str) -> str:
        text = self.string(node, key)
        parts = urlsplit(text)
        if parts.username is not None or parts.password is not None:
            raise self.error(node, key, "no login in the URL (it would be shown wherever the "
                             "URL is); put Alertmanager behind a loopback or TLS proxy that "
                             "authenticates, or reach it without one")
        try:
            parts.port  # noqa: B018  # raises ValueError for a port out of range
        except ValueError:
            raise self.error(node, key, f"{text!r}: the port is not a number from 1 to "
                             "65535") from None
        url = self.url(node, key).rstrip("/")
        for suffix in ("/api/v2/alerts", "/api/v2", "/api/v1/alerts"):
            if url.endswith(suffix):
                raise self.error(node, key, f"{text!r}: give the Alertmanager's base URL "
                                 f"({url[:-len(suffix)] or url}); zelador adds /api/v2/alerts")
        return url

    def alertmanager(self, node: yaml.Node, key: str) -> Alertmanager:
        if isinstance(node, yaml.ScalarNode):
            return Alertmanager(url=self.am_url(node, key))
        entries = self.mapping(node, key, keys.names("alerts.channels.NAME.alertmanager"))
        if "url" not in entries:
            raise self.error(node, f"{key}.url", "missing: the Alertmanager (e.g. "
                             "http://alertmanager:9093)")
        values: dict[str, object] = {"url": self.am_url(entries["url"], f"{key}.url")}
        if "timeout" in entries:
            values["timeout"] = self.timeout(entries["timeout"], f"{key}.timeout")
        if "resend" in entries:
            resend = self.duration(entries["resend"], f"{key}.resend", minimum=1.0)
            if resend > 3600:
                raise self.error(entries["resend"], f"{key}.resend", "more than 1h: Alertmanager "
                                 "would resolve the alert between two posts")
            values["resend"] = resend
        if float(values.get("timeout", 10.0)) > float(values.get("resend", 60.0)):  # type: ignore[arg-type]
            raise self.error(entries.get("timeout") or node, f"{key}.timeout", "longer than "
                             "resend: an attempt would still hang when the next resend is due")
        if "labels" in entries:
            labels = []
            for label, value_node in self.mapping(entries["labels"], f"{key}.labels", ()).items():
                value = str(self.scalar(value_node, f"{key}.labels.{label}"))
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label) or label.startswith("__"):
                    raise self.error(value_node, f"{key}.labels.{label}", f"{label!r} is not a "
                                     "Prometheus label name (letters, digits, _; not __)")
                if label in RESERVED_LABELS:
                    raise self.error(value_node, f"{key}.labels.{label}", f"{label!r} is set by "
                                     f"zelador (its labels: {', '.join(RESERVED_LABELS)})")
                labels.append((label, value))
            values["labels"] = tuple(labels)
        return Alertmanager(**values)  # type: ignore[arg-type]

    def headers(self, node: yaml.Node, key: str) -> tuple[tuple[str, str], ...]:
        pairs = []
        for header, value_node in self.mapping(node, key, ()).items():
            value = str(self.scalar(value_node, f"{key}.{header}"))
            if not re.match(r"^[A-Za-z0-9-]+$", header) or any(c in value for c in "\r\n"):
                raise self.error(value_node, f"{key}.{header}", "not a valid HTTP header "
                                 "(name: letters, digits and -; value: one line)")
            pairs.append((header, value))
        return tuple(pairs)

    def telegram(self, node: yaml.Node, key: str) -> Telegram:
        entries = self.mapping(node, key, keys.names("alerts.channels.NAME.telegram"))
        for needed, example in (("token_file", "/etc/zelador/telegram.token"),
                                ("chat_id", '"-100123"')):
            if needed not in entries:
                raise self.error(node, f"{key}.{needed}", f"missing (e.g. {example})")
        values: dict[str, object] = {
            "token_file": self.secret_file(entries["token_file"], f"{key}.token_file"),
            "chat_id": str(self.scalar(entries["chat_id"], f"{key}.chat_id")),
        }
        if not re.match(r"^(-?\d+|@[A-Za-z0-9_]{4,})$", str(values["chat_id"])):
            raise self.error(entries["chat_id"], f"{key}.chat_id", f"{values['chat_id']!r} is "
                             "not a chat id (a number such as \"-100123\", or @channelname)")
        if "on_recovery" in entries:
            values["on_recovery"] = self.choice(entries["on_recovery"], f"{key}.on_recovery",
                                                ("delete", "edit", "send"))
        if "timeout" in entries:
            values["timeout"] = self.timeout(entries["timeout"], f"{key}.timeout")
        if "api_url" in entries:
            values["api_url"] = self.url(entries["api_url"], f"{key}.api_url").rstrip("/")
        return Telegram(**values)  # type: ignore[arg-type]

    def email(self, node: yaml.Node, key: str) -> Email:
        entries = self.mapping(node, key, keys.names("alerts.channels.NAME.email"))
        for needed, example in (("host", "smtp.example.net"), ("from", "pos@example.net"),
                                ("to", "[ops@example.net]")):
            if needed not in entries:
                raise self.error(node, f"{key}.{needed}", f"missing (e.g. {example})")
        values: dict[str, object] = {"host": self.string(entries["host"], f"{key}.host")}
        values["sender"] = self.mail_address(entries["from"], f"{key}.from")
        to = self.names(entries["to"], f"{key}.to")
        for address in to:
            self.mail_address(entries["to"], f"{key}.to", address)
        values["to"] = to
        tls = "starttls"
        if "tls" in entries:
            tls = self.choice(entries["tls"], f"{key}.tls", ("starttls", "ssl", "none"))
            values["tls"] = tls
        values["port"] = (self.count(entries["port"], f"{key}.port", 1, 65535) if "port" in entries
                          else 465 if tls == "ssl" else 587 if tls == "starttls" else 25)
        if "user" in entries:
            values["user"] = self.string(entries["user"], f"{key}.user")
        if "password_file" in entries:
            if tls == "none" and not is_loopback(str(values["host"])):
                raise self.error(entries["tls"], f"{key}.tls", "a password would cross the "
                                 "network in clear; use starttls or ssl (or a loopback relay)")
            values["password_file"] = self.secret_file(entries["password_file"],
                                                       f"{key}.password_file")
        if "ca_file" in entries:
            values["ca_file"] = self.string(entries["ca_file"], f"{key}.ca_file")
            if self.check_files and not os.path.isfile(str(values["ca_file"])):
                raise self.error(entries["ca_file"], f"{key}.ca_file", "no such file")
        if "timeout" in entries:
            values["timeout"] = self.timeout(entries["timeout"], f"{key}.timeout")
        return Email(**values)  # type: ignore[arg-type]

    def alert_command(self, node: yaml.Node, key: str) -> Command:
        if not isinstance(node, yaml.MappingNode):
            return Command(argv=self.command(node, key, False))
        entries = self.mapping(node, key, keys.names("alerts.channels.NAME.command"))
        if "argv" not in entries:
            raise self.error(node, f"{key}.argv", "missing: the command to run (a list or a "
                             "line split like a shell would, never run by one)")
        values: dict[str, object] = {"argv": self.command(entries["argv"], f"{key}.argv", False)}
        if "timeout" in entries:
            values["timeout"] = self.timeout(entries["timeout"], f"{key}.timeout")
        return Command(**values)  # type: ignore[arg-type]

    def rules(self, node: yaml.Node, channels: tuple[Channel, ...], programs: list[Program],
              jobs: tuple[Job, ...], checks: tuple[str, ...] = ()) -> tuple[Rule, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, "alerts.rules", "expected a list of rules (e.g. - {events: "
                             "[gave_up], channels: [phone]})")
        known = {"programs": tuple(p.name for p in programs), "jobs": tuple(j.name for j in jobs),
                 "checks": checks, "channels": tuple(c.name for c in channels)}
        out = []
        for index, item in enumerate(node.value):
            key = f"alerts.rules[{index}]"
            entries = self.mapping(item, key, keys.names("alerts.rules[]"))
            values: dict[str, object] = {}
            for field in ("programs", "jobs", "checks", "channels"):
                if field in entries:
                    names = self.names(entries[field], f"{key}.{field}")
                    for name in names:
                        if name not in known[field]:
                            hint = close_matches(name, known[field])
                            raise self.error(entries[field], f"{key}.{field}",
                                             f"no {field[:-1]} {name!r}" +
                                             (f" (did you mean {hint[0]!r}?)" if hint else
                                              f" (known: {', '.join(known[field]) or 'none'})"))
                    values[field] = names
            if "events" in entries:
                events = self.names(entries["events"], f"{key}.events")
                allowed = self.problems_for(values)
                for name in events:
                    if name not in allowed:
                        hint = close_matches(name, allowed)
                        raise self.error(entries["events"], f"{key}.events",
                                         f"{name!r} is not a problem" +
                                         (f" (did you mean {hint[0]!r}?)" if hint else
                                          f" (known: {', '.join(allowed)})"))
                values["events"] = events
            if "recoveries" in entries:
                values["recoveries"] = self.boolean(entries["recoveries"], f"{key}.recoveries")
            out.append(Rule(**values))  # type: ignore[arg-type]
        return tuple(out)

    @staticmethod
    def problems_for(values: dict[str, object]) -> tuple[str, ...]:
        kinds = [k for k in ("program", "job", "check") if f"{k}s" in values]
        if len(kinds) == 1:
            return PROBLEMS[kinds[0]]
        return ALL_PROBLEMS

    # --- values ---------------------------------------------------------------------------------

    def url(self, node: yaml.Node, key: str) -> str:
        text = self.string(node, key)
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.error(node, key, f"{text!r} is not an http:// or https:// URL")
        return text

    def timeout(self, node: yaml.Node, key: str) -> float:
        seconds = self.duration(node, key, minimum=0.1)
        if seconds > 600:
            raise self.error(node, key, "more than 10m: a send that slow is a failure; "
                             "it is retried")
        return seconds

    def mail_address(self, node: yaml.Node, key: str, text: str | None = None) -> str:
        address = text if text is not None else self.string(node, key)
        if not _ADDRESS.match(address):
            raise self.error(node, key, f"{address!r} is not a mail address (e.g. "
                             "ops@example.net)")
        return address

    def count_in(self, node: yaml.Node, key: str, example: str) -> tuple[int, float]:
        text = str(self.scalar(node, key))
        found = re.fullmatch(r"\s*(\d+)\s+in\s+(.+)", text)
        if not found or int(found.group(1)) < 1:
            raise self.error(node, key, f"{text!r} is not `COUNT in SPAN` (e.g. {example})")
        return int(found.group(1)), self._span(node, key, found.group(2))

    def retry(self, node: yaml.Node) -> tuple[float, float]:
        entries = self.mapping(node, "alerts.retry", keys.names("alerts.retry"))
        first = (self.duration(entries["first"], "alerts.retry.first", minimum=1.0)
                 if "first" in entries else 5.0)
        most = (self.duration(entries["max"], "alerts.retry.max", minimum=1.0)
                if "max" in entries else max(600.0, first))
        if most < first:
            raise self.error(entries["max"], "alerts.retry.max", "shorter than retry.first")
        return first, most

    def secret_file(self, node: yaml.Node, key: str) -> str:
        """A file holding a secret: absolute; as root, owned by root and unreadable by others."""
        path = self.string(node, key)
        if not path.startswith("/"):
            raise self.error(node, key, f"{path!r}: give an absolute path")
        if not self.check_files:
            return path
        try:
            info = os.stat(path)
        except OSError as exc:
            raise self.error(node, key, f"{path!r}: {exc.strerror} (put the secret alone in "
                             f"that file, chmod 600)") from None
        if not stat.S_ISREG(info.st_mode):
            raise self.error(node, key, f"{path!r} is not a file")
        if running_as_root():
            readable_by = ("others" if info.st_mode & stat.S_IROTH else
                           f"group gid {info.st_gid}" if info.st_mode & stat.S_IRGRP and
                           info.st_gid != 0 else "")
            if info.st_uid != 0 or readable_by:
                who = f"owned by uid {info.st_uid}" if info.st_uid != 0 else \
                    f"readable by {readable_by}"
                raise self.error(node, key, f"refusing secret file {path!r}: it is {who} (fix: "
                                 f"chown root:root {path} && chmod 600 {path})")
            try:
                os.close(open_checked(path, "secret file", secret=True))
            except UnsafeFileError as exc:
                raise self.error(node, key, str(exc)) from None
            except OSError as exc:
                raise self.error(node, key, f"{path!r}: cannot check {exc.filename!r}: "
                                 f"{exc.strerror}") from None
        return path
