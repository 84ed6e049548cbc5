"""The TCP intake's own process: `python -m zelador.jobs.intakeworker` (started by zelador only).

zelador binds the port (as root, so any port works and a taken one is said at once) and passes
this process two sockets: the listening one and a channel to zelador (their fd numbers are in
the settings, the one argument, JSON). Here the
worker lowers its priority (nice 10), gives up root (to `nobody`, or the user named in argv),
and serves: parsing and answering happen in this process, with its own interpreter lock, so a
flood of reports competes with zelador's supervision loop for CPU only, and with a lower
priority. The network-facing parser never runs as root.

Channel, one JSON object a line. To zelador: `{"b": batch, "a": [[job, verb, run, exit, msg,
duration, source, raw]...], "r": [[source, reason, raw, job]...], "c": [accepted, rejected,
refused, busy, evicted], "k": {kind: count}}` per round (`a`: the accepted reports, at most
FRAME_REPORTS, waiting for their answer; `r`: a few refused lines as examples; `c` and `k`:
counts since this worker started). From zelador: `{"ack": batch, "v": ["", "too many open runs",
...]}` once it holds a batch durably (one verdict per report, "" for OK), and `{"names": [...],
"ids": {"25": "name"}}` when the jobs change. zelador checks every line it reads: anything but
the above costs this worker (it is killed and started again). When zelador goes away (the
channel closes) the worker exits.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sys
from typing import Any

from zelador.jobs.intake import Accepted, Directory, Rejected
from zelador.jobs.intakeserver import IntakeServer, Limits


def directory_from(message: dict[str, Any]) -> Directory:
    return Directory(frozenset(message.get("names", ())),
                     {int(k): str(v) for k, v in message.get("ids", {}).items()})


def encode(batch: int, accepted: list[Accepted], samples: list[Rejected],
           server: IntakeServer) -> bytes:
    rows = [[got.job, got.parsed.verb, got.parsed.run_id, got.parsed.exit_status,
             got.parsed.message, got.parsed.duration, got.source, got.raw] for got in accepted]
    c = server.counters
    return json.dumps({"b": batch, "a": rows,
                       "r": [[got.source, got.reason, got.raw, got.job] for got in samples],
                       "c": c.as_list(), "k": c.kinds}).encode() + b"\n"


def drop_privileges(user: str) -> None:
    os.nice(10)
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def main(argv: list[str]) -> int:
    settings = json.loads(argv[0])
    drop_privileges(settings.get("user", "nobody"))
    listener = socket.socket(fileno=int(settings["listen_fd"]))
    channel = socket.socket(fileno=int(settings["channel_fd"]))
    channel.setblocking(True)  # a slow zelador holds us back (and the clients wait): bounded
    buffer = b""
    server: IntakeServer

    def from_zelador() -> None:
        nonlocal buffer
        chunk = channel.recv(65536)
        if not chunk:
            server.stop()
            return
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "ack" in message:
                server.ack(int(message["ack"]), [str(v) for v in message.get("v", ())])
            else:
                server.directory = directory_from(message)

    def deliver(batch: int, accepted: list[Accepted], samples: list[Rejected]) -> None:
        channel.sendall(encode(batch, accepted, samples, server))

    limits = Limits(tuple(settings.get("allow", ())), int(settings.get("max_connections", 256)),
                    float(settings.get("idle_timeout", 10.0)))
    server = IntakeServer(listener, limits, directory_from(settings.get("directory", {})), deliver,
                          channel, from_zelador)
    try:
        server.run()
    except (BrokenPipeError, ConnectionResetError):
        return 0  # zelador went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
