"""`zelador alerts`: open incidents and the outbox; `zelador alerts test [CHANNEL]`: send now.

Both work without the daemon: the first reads `alerts.db` (read-only), the second builds the
channel from the config and makes one attempt from this process, printing the server's answer.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

from zelador.errors import EX_OK, EX_RUNTIME, UsageError

if TYPE_CHECKING:
    from zelador.config.model import Config

FILE = "alerts.db"  # alerts/store.py has the same; imported lazily there (sqlite3, json)


def cmd_alerts(args: argparse.Namespace, load: Callable[[str], Config],
               state_dir: Callable[[argparse.Namespace], str]) -> int:
    if args.action == "test":
        return send_test(load(args.config), args.channel)
    if args.channel is not None:
        raise UsageError(f"unexpected {args.channel!r} (did you mean: zelador alerts test "
                         f"{args.channel}?)")
    from zelador.alerts.store import read_outbox

    path = os.path.join(state_dir(args), FILE)
    if not os.path.exists(path):
        print(f"no alerts yet ({path} does not exist)")
        return EX_OK
    data = read_outbox(path, limit=args.limit)
    if args.json:
        print(json.dumps(data, indent=2))
        return EX_OK
    print(render(data))
    return EX_OK


def render(data: dict[str, Any]) -> str:
    lines = []
    incidents = data["incidents"]
    lines.append(f"open incidents: {len(incidents)}")
    for inc in incidents:
        lines.append(f"  {inc['subject_kind']} {inc['subject']}: {inc['problem']} since "
                     f"{_when(inc['opened'])}: {inc['message']}")
    counts = data["counts"]
    lines.append("outbox: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in
                                        ("pending", "sending", "sent", "failed", "superseded")))
    if data["latest"]:
        lines.append(f"{'id':>6}  {'when':19}  {'channel':10} {'phase':9} {'state':10} "
                     f"{'tries':>5}  about")
    for row in data["latest"]:
        about = f"{row['subject']} {row['problem']}" if row["subject"] else ""
        lines.append(f"{row['id']:>6}  {_when(row['created'])}  {row['channel'][:10]:10} "
                     f"{row['phase']:9} {row['state']:10} {row['attempts']:>5}  {about}")
        if row["last_error"] and row["state"] != "sent":
            lines.append(f"{'':8}last error: {row['last_error']}")
    return "\n".join(lines)


def _when(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))


def send_test(config: Config, only: str | None) -> int:
    from zelador.alerts.channels import build
    from zelador.alerts.outbox import Batch

    channels = config.alerts.channels
    if not channels:
        raise UsageError(f"no alert channels in {config.path} (alerts.channels)")
    if only is not None:
        names = [c.name for c in channels]
        if only not in names:
            raise UsageError(f"no channel {only!r} in {config.path} (known: {', '.join(names)})")
        channels = tuple(c for c in channels if c.name == only)
    host = config.alerts.host or config.fleet.name or socket.gethostname()
    status = EX_OK
    for channel in channels:
        now = time.time()
        item = {"key": None, "phase": "test", "subject_kind": None, "subject": None,
                "problem": None, "opened": now, "closed": None, "at": now, "host": host,
                "message": f"a test of channel {channel.name} ({channel.kind}) from {host}; "
                           "if you read this, alerts reach you", "first": ""}
        started = time.monotonic()
        outcome = build(channel, host).send(Batch(channel.name, [item]))
        took = f"{time.monotonic() - started:.1f}s"
        if outcome.ok:
            note = f" ({outcome.note})" if outcome.note else ""
            print(f"{channel.name} ({channel.kind}): sent in {took}{note}")
        else:
            print(f"{channel.name} ({channel.kind}): FAILED after {took}: {outcome.error}",
                  file=sys.stderr)
            status = EX_RUNTIME
    return status


def add_commands(sub: Any, common: argparse.ArgumentParser, load: Callable[[str], Config],
                 state_dir: Callable[[argparse.Namespace], str]) -> None:
    alerts = sub.add_parser("alerts", parents=[common],
                            help="open incidents and the alert outbox; `alerts test [CHANNEL]` "
                                 "sends a test message")
    alerts.add_argument("action", nargs="?", choices=("test",),
                        help="test: send a test message to every channel (or CHANNEL) now")
    alerts.add_argument("channel", nargs="?", help="the channel to test")
    alerts.add_argument("--json", action="store_true", help="JSON instead of text")
    alerts.add_argument("--limit", type=int, default=20, help="outbox rows shown (20)")
    alerts.add_argument("--state-dir", default=None,
                        help="where alerts.db is ($STATE_DIRECTORY or /var/lib/zelador)")
    alerts.set_defaults(func=lambda args: cmd_alerts(args, load, state_dir))
