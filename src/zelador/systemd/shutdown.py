"""An orderly shutdown is not a crash.

At poweroff, reboot or an isolate, systemd stops every unit; the programs' transient scopes and
zelador.service have no order between them, so the programs could die first and zelador would
log exits, fail to restart them (systemd refuses new units while it shuts down) and alert. Two
things prevent it: each scope is created `Before=` zelador's own unit (`own_unit()`), so systemd
stops zelador first and the programs after it (stop order is the reverse of start order); and
zelador, told to stop, asks systemd whether the system is stopping (`system_stopping()`) to say
"system is shutting down; leaving programs to systemd" instead of a plain stop.
"""

from __future__ import annotations

import os
import re
import subprocess

UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]+\.service")


def own_unit(cgroup_file: str = "/proc/self/cgroup") -> str:
    """The service unit zelador runs in ("zelador.service"), or "" outside one (a test, a shell).
    Only when systemd started us (INVOCATION_ID), so a shell in a user's session is not taken
    for a unit."""
    if not os.environ.get("INVOCATION_ID"):
        return ""
    try:
        with open(cgroup_file, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        path = line.split(":", 2)[-1]
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if UNIT.fullmatch(name):
            return name
    return ""


def scopes_before(unit: str) -> str:
    """The unit the programs' scopes are stopped after: zelador's own, or, for the periodic
    check (`zelador-check.service`, a oneshot that may start a program), the daemon's
    (`zelador.service`, as `zelador units` names the pair)."""
    if unit.endswith("-check.service"):
        return unit[: -len("-check.service")] + ".service"
    return unit


def system_stopping(timeout: float = 10.0) -> bool:
    """True while systemd shuts the system down (`systemctl is-system-running`: stopping)."""
    try:
        done = subprocess.run(["systemctl", "is-system-running"], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.stdout.strip() == "stopping"
