"""What `zelador run` does first, before any heavy import: hold the signals the daemon handles.

The loop installs its handlers for SIGHUP (reload), SIGTERM and SIGINT (stop) only once the
imports are done and the config is read (~0.4 s). A signal in that window would take its default
action and end zelador without a word (a reload sent by a script right after a restart, a stop
during start-up). So the entry point gives them a handler that only notes them, as its first
instruction; `Loop.on_signal` takes what was noted (`take`) and runs it on its first turn: a
pending SIGHUP becomes a reload, a pending SIGTERM a clean stop.

Noting rather than blocking (`pthread_sigmask`): a blocked mask is inherited by every thread
started meanwhile and by every process those threads spawn (alert commands, check commands), which
would then ignore SIGTERM; a handler is reset to the default by exec.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

HELD = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
DAEMON_COMMANDS = ("run", "demo")
_noted: set[int] = set()


def hold_signals() -> None:
    """Note HELD signals instead of dying of them, until the loop's own handlers replace this."""
    for signum in HELD:
        signal.signal(signum, _note)


def take(signum: int) -> bool:
    """True (once) if `signum` arrived while held."""
    if signum in _noted:
        _noted.discard(signum)
        return True
    return False


def _note(signum: int, frame: FrameType | None) -> None:
    _noted.add(signum)


def main() -> int:
    """The `zelador` command (console entry and `python -m zelador`)."""
    if sys.argv[1:2] and sys.argv[1] in DAEMON_COMMANDS:
        hold_signals()
    from zelador.cli import main as cli_main

    return cli_main()
