"""`zelador fleet`: every terminal publishing to MQTT or ZooKeeper, and what is down on each.

A terminal is UP (everything runs), DOWN (something watched is not running, or a problem is
open), or MISSING (it published once, and its zelador is not connected now: the machine is off,
zelador is stopped, or the network is cut; over MQTT: its presence is false, or its state was
not refreshed within --stale). Exit 3 when any terminal is DOWN or MISSING. `--watch` follows
changes (ZooKeeper: a ChildrenWatch on the hosts and a DataWatch on each; MQTT: the subscription
stays open). `--summary`: counts by state and the commonest problems across the fleet.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from zelador.errors import EX_DOWN, EX_OK, ControlError

if TYPE_CHECKING:
    from zelador.fleet.mqtt import Login


def verdict(terminal: dict[str, Any]) -> str:
    if not terminal.get("connected"):
        return "MISSING"
    return "DOWN" if terminal.get("down") or terminal.get("problems") else "UP"


def config_differs(terminals: list[dict[str, Any]], sha: str) -> list[dict[str, Any]]:
    """`--config-not SHA`: the terminals whose running config is not `sha` (a prefix will do,
    as `zelador status` shows 12 characters); one that never said (an older zelador, MISSING
    since) differs too: nobody knows it runs `sha`."""
    sha = sha.lower()
    return [t for t in terminals if not str(t.get("config_sha256") or "").startswith(sha)]


def render(terminals: list[dict[str, Any]], down_only: bool) -> str:
    rows = [["TERMINAL", "STATE", "SUMMARY", "WHAT"]]
    for term in terminals:
        state = verdict(term)
        if down_only and state == "UP":
            continue
        what = ", ".join([*(f"{p} down" for p in term.get("down", [])), *term.get("problems", []),
                          f"config {str(term.get('config_sha256') or 'unknown')[:12]}"])
        age = ""
        if term.get("updated_at"):
            age = f" (updated {time.strftime('%H:%M:%S', time.localtime(term['updated_at']))})"
        rows.append([term["name"], state, (term.get("summary") or "-") + age, what])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:3])) + "  " + r[3]).rstrip()
             for r in rows]
    counts = {s: sum(1 for t in terminals if verdict(t) == s) for s in ("UP", "DOWN", "MISSING")}
    lines.append(f"{len(terminals)} terminals: {counts['UP']} up, {counts['DOWN']} down, "
                 f"{counts['MISSING']} missing")
    return "\n".join(lines)


def problem_counts(terminals: list[dict[str, Any]]) -> dict[str, int]:
    """How many live terminals have each problem ("comunicador down": 37)."""
    problems: Counter[str] = Counter()
    for term in terminals:
        if verdict(term) == "MISSING":
            continue
        down, open_ = term.get("down") or [], term.get("problems") or []
        problems.update({*(f"{p} down" for p in down if isinstance(p, str)),
                         *(p for p in open_ if isinstance(p, str))})
    return dict(problems)


def summarize(terminals: list[dict[str, Any]], top: int = 10) -> str:
    """Counts by state, then the commonest problems: `comunicador down on 37 of 1,200`."""
    total = len(terminals)
    counts = Counter(verdict(t) for t in terminals)
    problems = problem_counts(terminals)
    lines = [f"{total:,} terminals: {counts['UP']:,} up, {counts['DOWN']:,} down, "
             f"{counts['MISSING']:,} missing"]
    for what, count in sorted(problems.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        lines.append(f"  {what} on {count:,} of {total:,}")
    if counts["MISSING"]:
        lines.append(f"  missing: {counts['MISSING']:,} of {total:,}")
    return "\n".join(lines)


class ZooKeeperSource:
    def __init__(self, hosts: str, path: str) -> None:
        self.hosts, self.path = hosts, path

    def read(self) -> list[dict[str, Any]]:
        from zelador.fleet.zookeeper import read_fleet

        try:
            return read_fleet(self.hosts, self.path)
        except Exception as exc:  # kazoo's timeout and connection errors have no common base
            raise ControlError(f"cannot read the fleet from ZooKeeper {self.hosts}: "
                               f"{type(exc).__name__} {exc}".strip()) from exc

    def watch(self, show: Any) -> int:
        return _watch(self.hosts, self.path, show)


class MqttSource:
    def __init__(self, login: Login, topic: str, *, stale_after: float) -> None:
        self.login, self.topic, self.stale_after = login, topic, stale_after

    def _reader(self) -> Any:
        from zelador.fleet.mqtt import FleetReader

        reader = FleetReader(self.login, self.topic)
        try:
            reader.connect()
        except ImportError:
            raise ControlError("zelador fleet --mqtt needs python3-paho-mqtt") from None
        except (OSError, TimeoutError, ValueError) as exc:
            raise ControlError(str(exc)) from None
        return reader

    def read(self) -> list[dict[str, Any]]:
        reader = self._reader()
        try:
            terminals: list[dict[str, Any]] = reader.read(stale_after=self.stale_after)
            if not reader.complete:
                print("zelador fleet: the broker did not confirm the end of the retained "
                      "messages (no write access to TOPIC/readers/?); this list may be "
                      "incomplete", file=sys.stderr)
            return terminals
        finally:
            reader.close()

    def watch(self, show: Any) -> int:
        reader = self._reader()
        try:
            show(reader.read(stale_after=self.stale_after))
            while True:
                # Wake on a message, and every few seconds for states that went stale.
                reader.changed.wait(5.0)
                reader.changed.clear()
                time.sleep(0.2)  # a burst of changes: one screen
                if not reader.connected:
                    print(f"--- {time.strftime('%H:%M:%S')} DISCONNECTED from "
                          f"{self.login.url}: what follows is the last known state; "
                          "retrying", flush=True)
                show(reader.table(stale_after=self.stale_after))
        except KeyboardInterrupt:
            return EX_OK
        finally:
            reader.close()


def run_fleet(source: ZooKeeperSource | MqttSource, *, down_only: bool, watch: bool,
              as_json: bool, summary: bool = False, config_not: str | None = None) -> int:
    def text(terminals: list[dict[str, Any]]) -> str:
        return summarize(terminals) if summary else render(terminals, down_only)

    if watch:
        def show(terminals: list[dict[str, Any]]) -> None:
            print(f"--- {time.strftime('%H:%M:%S')}")
            print(text(terminals), flush=True)

        return source.watch(show)
    terminals = source.read()
    if config_not is not None:
        differ = config_differs(terminals, config_not)
        if as_json:
            print(json.dumps(differ, indent=2))
        else:
            print(render(differ, False) + f" (of {len(terminals)}: config is not {config_not})")
        return EX_DOWN if differ else EX_OK
    if as_json and summary:
        counts = {s: sum(1 for t in terminals if verdict(t) == s) for s in ("UP", "DOWN",
                                                                               "MISSING")}
        print(json.dumps({"terminals": len(terminals), "states": counts,
                          "problems": problem_counts(terminals)}, indent=2))
    elif as_json:
        print(json.dumps(terminals, indent=2))
    else:
        print(text(terminals))
    if not terminals:
        print("zelador fleet: no terminal found (is the topic or path right?)", file=sys.stderr)
        return EX_DOWN
    return EX_DOWN if any(verdict(t) != "UP" for t in terminals) else EX_OK


def _watch(hosts: str, path: str, show: Any) -> int:
    from kazoo.client import KazooClient

    from zelador.fleet.zookeeper import read_fleet

    client = KazooClient(hosts=hosts, read_only=True)
    client.start(timeout=5.0)
    changed = threading.Event()
    watched: set[str] = set()

    def on_data(data: bytes | None, stat: Any) -> None:
        changed.set()

    def on_children(children: list[str]) -> None:
        for name in children:
            if name not in watched:
                watched.add(name)
                client.DataWatch(f"{path}/hosts/{name}", on_data)
        changed.set()

    client.ensure_path(f"{path}/hosts")
    client.ChildrenWatch(f"{path}/hosts", on_children)
    try:
        while True:
            changed.wait()
            changed.clear()
            time.sleep(0.2)  # a burst of changes: one screen
            show(read_fleet(hosts, path))
    except KeyboardInterrupt:
        return EX_OK
    finally:
        client.stop()
        client.close()
