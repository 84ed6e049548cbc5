"""`zelador fleet`: every terminal publishing to ZooKeeper, and what is down on each.

A terminal is UP (everything runs), DOWN (something watched is not running, or a problem is
open), or MISSING (it published once, and its zelador is not connected now: the machine is off,
zelador is stopped, or the network is cut). Exit 3 when any terminal is DOWN or MISSING.
`--watch` follows changes with a ChildrenWatch on the hosts and a DataWatch on each.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from zelador.errors import EX_DOWN, EX_OK, ControlError


def verdict(terminal: dict[str, Any]) -> str:
    if not terminal.get("connected"):
        return "MISSING"
    return "DOWN" if terminal.get("down") or terminal.get("problems") else "UP"


def render(terminals: list[dict[str, Any]], down_only: bool) -> str:
    rows = [["TERMINAL", "STATE", "SUMMARY", "WHAT"]]
    for term in terminals:
        state = verdict(term)
        if down_only and state == "UP":
            continue
        what = ", ".join([*(f"{p} down" for p in term.get("down", [])), *term.get("problems", [])])
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


def run_fleet(hosts: str, path: str, *, down_only: bool, watch: bool, as_json: bool) -> int:
    from zelador.fleet.zookeeper import read_fleet

    try:
        terminals = read_fleet(hosts, path)
    except Exception as exc:  # kazoo's timeout and connection errors have no common base
        raise ControlError(f"cannot read the fleet from ZooKeeper {hosts}: "
                               f"{type(exc).__name__} {exc}".strip()) from exc
    if watch:
        return _watch(hosts, path, down_only)
    if as_json:
        print(json.dumps(terminals, indent=2))
    else:
        print(render(terminals, down_only))
    return EX_DOWN if any(verdict(t) != "UP" for t in terminals) else EX_OK


def _watch(hosts: str, path: str, down_only: bool) -> int:
    from kazoo.client import KazooClient

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
            from zelador.fleet.zookeeper import read_fleet

            print(f"--- {time.strftime('%H:%M:%S')}")
            print(render(read_fleet(hosts, path), down_only), flush=True)
    except KeyboardInterrupt:
        return EX_OK
    finally:
        client.stop()
        client.close()
