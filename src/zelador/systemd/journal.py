"""Every decision as one structured journald event; readable stderr lines when journald is absent.

Fields: MESSAGE, MESSAGE_ID (one per event kind, explained in zelador.catalog), PRIORITY,
ZELADOR_EVENT, ZELADOR_PROGRAM (the event's subject), and one ZELADOR_<NAME> per event field
(ZELADOR_PID, ZELADOR_RESTARTS, ZELADOR_EXIT_STATUS ...).
So `journalctl -u zelador ZELADOR_PROGRAM=comunicador ZELADOR_EVENT=exited` finds what you want.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Protocol

from zelador.events import Event, Sink

MESSAGE_IDS: dict[str, str] = {
    "starting": "bc923587e42c4e39b0f39eccb8e0eabd",
    "restarting": "7f236906785746db8dc192fa6de439a2",
    "started": "7efc452ef43d436bb2c200c067f21c97",
    "stable": "457c0d5e0e0643028f45c074d71e07b6",
    "family_member_exited": "1558838cf31649c39c0cba4074000178",
    "found": "b4feb99145134cc7b51da60b3877cc9e",
    "exited": "d63bb5c6324045538d1a8133e6efcfdd",
    "backoff": "d4eb9e437be34eb0868fce57f577e2f7",
    "start_failed": "c6d07d3975224b27954d31b46c359b79",
    "gave_up": "1a15ff9b23f145189853681a7357b4c8",
    "duplicate": "9a4e7458843e489b8aab9cc38aa01c97",
    "stopping": "2177958d56c343a7a3f968c5a37414d7",
    "stopped": "cca75f19575c446492e8a6b29eeeacdd",
    "stop_timeout": "250663c86c714bb380960041d399d105",
    "stop_failed": "dda81ed32df6497ca63ea799dae8015f",
    "ready": "2bacb812305043deb8c9102276b34058",
    "reloaded": "a1739fa294354bd7a5ba627937c67a13",
    "config_rejected": "6cab4768ddf641b8b9ca794d917c7b07",
    "shutdown": "f20c77a007cf4fbfa43c706373da6b66",
    "script_failed": "0f739be21fe94a889d20dc761c8c95a7",
    "degraded": "e94efdb41fea4377917b7135ee7861e9",
    "recovered": "5d80216f7a7b41568bf1777f581ba261",
    "host_problem": "1ccc9bbf64684dac82d2046f365e7f1a",
    "waiting": "071eb6f03b8f498e9a49452dc34e7ca0",
    "state_ignored": "cbbb08d8ad2640dcb658f701d7020303",
    "vendor_starter": "fa7b54512e0f484489325aee91e4e527",
    "job_started": "da154316c36a4851b44a6e80bfe74962",
    "job_ok": "cd1cd47852e44659a14cfb696747433c",
    "job_failed": "ef4f261ca4fe4a60b6b7aee3abee79f5",
    "job_timeout": "dc26fc07afeb4990b2b8f4ddef577a85",
    "job_missed": "d6e73135024a4a859fa2aa16faafaccd",
    "reports_replayed": "4705e66449ce4c9798d4543f1025695c",
    "report_rejected": "059793d220d54a3880c6a0dc678af1f8",
    "intake_busy": "f94f9268990d4732879814ebc6e0c8e2",
    "alert_sent": "9a576d0745894b22b81c3010ad804804",
    "alert_failed": "940c44f11cc34a51adca8a1ff00abc6b",
    "alert_given_up": "67ccde5c376842a6acde7479cc075913",
    "check_failed": "fc0384c8e0a045a5856b6efd92c1b2ee",
    "fleet_state": "1b19b35f744b4b8cad664ac7a196e09c",
    "check_recovered": "e6e364249dce4975be8d36d4269cc679",
}

_LEVELS = {0: "emerg", 1: "alert", 2: "crit", 3: "err", 4: "warning", 5: "notice", 6: "info",
           7: "debug"}


class Journal(Sink, Protocol):
    """The journal sink, which also gives started scripts somewhere to write."""

    def output_for(self, program: str) -> int:
        """An fd for a started script's stdout and stderr (the caller closes it)."""
        ...

    def where_output_goes(self, program: str) -> str:
        """Where a script's output can be read, for messages (`journalctl -t NAME`, a file)."""
        ...


def journald_connected() -> bool:
    """True when our stderr goes to journald (systemd sets JOURNAL_STREAM to its dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if ":" not in stream:
        return False
    try:
        info = os.fstat(2)
    except OSError:
        return False
    return stream == f"{info.st_dev}:{info.st_ino}"


def _fields(event: Event) -> dict[str, str]:
    out = {"ZELADOR_EVENT": event.kind}
    if event.subject is not None:
        out["ZELADOR_" + event.subject_kind.upper()] = event.subject
    for key, value in event.fields:
        out["ZELADOR_" + key.upper()] = value
    return out


class JournaldJournal:
    """Sends events to journald with systemd-python's C core (`sendv`, `stream_fd`).

    Not `systemd.journal.send`: that module pulls in logging, traceback, uuid and datetime (4 MiB
    of a 20 MiB budget) and walks the caller's stack on every message; the fields we send are
    complete without CODE_FILE/CODE_LINE.
    """

    def __init__(self, identifier: str = "zelador") -> None:
        # imported here: the stderr path must work without systemd-python
        from systemd._journal import sendv, stream_fd

        self._sendv = sendv
        self._stream_fd = stream_fd
        self._identifier = identifier

    def emit(self, event: Event) -> None:
        fields = {"MESSAGE": event.message, "PRIORITY": str(event.priority),
                  "SYSLOG_IDENTIFIER": self._identifier, **_fields(event)}
        message_id = MESSAGE_IDS.get(event.kind)
        if message_id:
            fields["MESSAGE_ID"] = message_id
        self._sendv(*(f"{key}={value}" for key, value in fields.items()))

    def output_for(self, program: str) -> int:
        """A journald stream socket; lines written to it are tagged `program` (priority info)."""
        return self._stream_fd(program, 6, False)

    def where_output_goes(self, program: str) -> str:
        return f"journalctl -t {program}"


class StderrJournal:
    """Readable lines on stderr, fields in brackets at the end; script output to a log folder."""

    def __init__(self, stream: IO[str] | None = None, logs_dir: str | None = None) -> None:
        self._stream = stream or sys.stderr
        self._logs_dir = logs_dir
        self._refused = ""  # why the logs folder is not used, said once

    def emit(self, event: Event) -> None:
        extra = _fields(event)
        tags = " ".join(f"{k[8:].lower()}={v.replace(' ', '_').replace(chr(10), '|')}"
                        for k, v in extra.items() if k != "ZELADOR_EVENT")  # one line each
        now = time.time()  # one read: the seconds and the milliseconds must agree
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        level = _LEVELS.get(event.priority, str(event.priority))
        message = event.message.replace("\n", " | ")
        self._stream.write(f"{stamp} {level:<7} {message}  [{event.kind}"
                           f"{' ' + tags if tags else ''}]\n")
        self._stream.flush()

    def output_for(self, program: str) -> int:
        if not self._logs_dir:
            return os.dup(2)
        from zelador.store.files import open_private, prepare_dir

        path = os.path.join(self._logs_dir, f"{program}.log")
        try:  # a folder nobody else can change, and no link in it followed
            prepare_dir(self._logs_dir, 0o750)
            return open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            if str(exc) != self._refused:
                self._refused = str(exc)
                self.emit(Event("degraded", f"script output goes to zelador's stderr, not "
                                f"{path}: {exc}", priority=4))
            return os.dup(2)

    def where_output_goes(self, program: str) -> str:
        return os.path.join(self._logs_dir, f"{program}.log") if self._logs_dir else "zelador's stderr"


def open_journal(target: str, logs_dir: str | None) -> Journal:
    """`target`: "journal", "stderr" or "auto" (journald when our stderr is connected to it)."""
    if target == "journal" or (target == "auto" and journald_connected()):
        try:
            return JournaldJournal()
        except ImportError:
            fallback = StderrJournal(logs_dir=logs_dir)
            fallback.emit(Event("degraded", "systemd-python is missing; logging to stderr instead",
                                priority=4))
            return fallback
    return StderrJournal(logs_dir=logs_dir)
