"""Run the configured argv (never through a shell) with the batch as JSON on stdin.

The environment is small and explicit: PATH, LANG, and ZELADOR_* describing the first alert
(ZELADOR_COUNT says how many the JSON holds). Exit 0 is delivered; any other status, or running
past the timeout (the command's whole session is killed), is tried again.
"""

from __future__ import annotations

import json
import os

from zelador.alerts.channels import Runner
from zelador.alerts.channels.common import document, short
from zelador.alerts.outbox import Batch, Outcome
from zelador.alerts.texts import headline, plain
from zelador.config.durations import format_duration
from zelador.config.host import check_root_only, running_as_root
from zelador.config.model import Command
from zelador.errors import UnsafeFileError


class CommandSender:
    def __init__(self, target: Command, host: str, runner: Runner | None = None) -> None:
        self.target = target
        self.host = host
        if runner is None:  # outside the daemon (`zelador alerts test`): a launcher of our own
            from zelador.programs.launcher import Launcher

            runner = Launcher().run_helper
        self.runner = runner

    def send(self, batch: Batch) -> Outcome:
        doc = document(batch, self.host)
        doc["text"] = plain(batch.items, self.host)
        first = batch.items[0]
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LANG": os.environ.get("LANG", "C.UTF-8"),
               "ZELADOR_HOST": self.host, "ZELADOR_CHANNEL": batch.channel,
               "ZELADOR_COUNT": str(len(batch.items)), "ZELADOR_PHASE": first["phase"],
               "ZELADOR_SUBJECT": str(first.get("subject") or ""),
               "ZELADOR_SUBJECT_KIND": str(first.get("subject_kind") or ""),
               "ZELADOR_PROBLEM": str(first.get("problem") or ""),
               "ZELADOR_TITLE": headline(first), "ZELADOR_MESSAGE": str(first.get("message"))}
        argv = list(self.target.argv)
        unsafe = _unsafe(argv[0])
        if unsafe:
            return Outcome(False, error=unsafe)
        try:
            status, out = self.runner(argv, json.dumps(doc).encode(), self.target.timeout, env)
        except OSError as exc:
            return Outcome(False, error=f"cannot run {argv[0]}: {exc.strerror or exc}")
        if status is None:
            return Outcome(False, error=f"{argv[0]} ran past its timeout "
                           f"({format_duration(self.target.timeout)}) and was killed")
        if status != 0:
            tail = short(out.splitlines()[-1]) if out.strip() else "no output"
            return Outcome(False, error=f"{argv[0]} exited with status {status}: {tail}")
        return Outcome(True)


def _unsafe(program: str) -> str:
    """Checked before every run, like a start script: it may have changed since the config."""
    if not os.path.isfile(program) or not os.access(program, os.X_OK):
        return f"{program!r} is not an executable file"
    if running_as_root():
        try:
            check_root_only(program, "alert command")
        except UnsafeFileError as exc:
            return str(exc)
        except OSError as exc:
            return f"{program!r}: cannot check {exc.filename!r}: {exc.strerror}"
    return ""
