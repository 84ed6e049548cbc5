"""Who else starts a watched program on this machine: the desktop's autostart entries
(/etc/xdg/autostart/*.desktop), systemd units and SysV init scripts (and rc.local) whose command
runs the same start script or the same executable. `zelador validate` and the daemon at start
say, for each, what will happen, so the vendor's own starters are kept or disabled knowingly.

Read-only and bounded: at most FILES files of at most MAX_BYTES each are read.
"""

from __future__ import annotations

import glob
import os
import shlex
from dataclasses import dataclass

from zelador.config.durations import format_duration
from zelador.config.model import Config, Program

MAX_BYTES = 256 * 1024
FILES = 2000
PLACES = (  # (kind, glob under the root)
    ("autostart", "etc/xdg/autostart/*.desktop"),
    ("unit", "etc/systemd/system/*.service"),
    ("unit", "lib/systemd/system/*.service"),
    ("unit", "usr/lib/systemd/system/*.service"),
    ("init script", "etc/init.d/*"),
    ("init script", "etc/rc.local"),
)


@dataclass(frozen=True)
class Starter:
    program: str
    kind: str  # autostart, unit, init script
    path: str  # as found (with the root)
    line: int
    command: str


def find(config: Config, root: str = "/") -> list[Starter]:
    """Every vendor starter of a program of `config` under `root`."""
    found: list[Starter] = []
    seen: set[str] = set()
    budget = FILES
    for kind, pattern in PLACES:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            real = os.path.realpath(path)
            if real in seen or not os.path.isfile(real) or budget <= 0:
                continue
            seen.add(real)
            budget -= 1
            name = os.path.basename(path)
            if name.startswith("zelador") or name.endswith((".dpkg-old", ".dpkg-dist")):
                continue
            found += _scan(config.programs, kind, path)
    return found


def _scan(programs: tuple[Program, ...], kind: str, path: str) -> list[Starter]:
    try:
        with open(path, "rb") as stream:
            text = stream.read(MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if kind == "autostart":
            if not line.startswith("Exec="):
                continue
            line = line[len("Exec="):]
        elif kind == "unit":
            if not line.startswith(("ExecStart=", "ExecStartPre=", "ExecStartPost=")):
                continue
            line = line.split("=", 1)[1].lstrip("-@+!:")
        words = _words(line)
        for prog in programs:
            if any(_starts(prog, word) for word in words):
                out.append(Starter(prog.name, kind, path, number, line[:200]))
    return out


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


SYSTEM = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/lib/", "/lib/")


def _starts(program: Program, word: str) -> bool:
    """`word` runs the program: its start script, its executable (`match.exe`), or a file of
    its name. A system-wide command (/bin/true, /usr/bin/python3) as the start or the name says
    nothing: many units run it; only `match.exe` names one of those."""
    if not word.startswith("/"):
        return False
    if program.match.exe and word == program.match.exe:
        return True
    if word.startswith(SYSTEM):
        return False
    script = program.start[2].split()[0] if program.shell and len(program.start) > 2 \
        else program.start[0]
    if word == script:
        return True
    return bool(program.match.name) and os.path.basename(word) == program.match.name


def enabled(starter: Starter, root: str = "/") -> bool:
    """A unit or an init script that runs at boot (a link in a .wants folder, an S link)."""
    name = os.path.basename(starter.path)
    if starter.kind == "unit":
        return bool(glob.glob(os.path.join(root, "etc/systemd/system/*.wants", name)))
    if starter.kind == "init script" and name != "rc.local":
        return bool(glob.glob(os.path.join(root, "etc/rc[2-5].d", f"S*{name}")))
    return True


def advice(config: Config, starter: Starter, root: str = "/") -> str:
    """What will happen, in one line, and what to do about it."""
    prog = config.program(starter.program)
    where = f"{starter.path}:{starter.line}"
    name = os.path.basename(starter.path)
    if starter.kind == "autostart" and prog.user == "session":
        return (f"{prog.name}: {where}: the desktop's autostart also starts it at each login "
                f"({starter.command}); zelador waits session_grace "
                f"({format_duration(prog.session_grace)}) after a login and adopts that copy. "
                "Keep it, or hide it (Hidden=true) to leave the start to zelador")
    if starter.kind == "autostart":
        return (f"{prog.name}: {where}: the desktop's autostart also starts it at each login, "
                f"as the user who logs in, while zelador runs it as {prog.user or 'root'}: a "
                "second copy would be a duplicate. Remove the entry, or make the program "
                "`user: session`")
    state = "enabled" if enabled(starter, root) else "not enabled"
    if starter.kind == "unit":
        return (f"{prog.name}: {where}: unit {name} ({state}) also starts it "
                f"({starter.command}); at boot zelador adopts what it started, not a second "
                f"copy, but systemd also stops and restarts it on its own: `systemctl disable "
                f"{name}` and leave it to zelador")
    return (f"{prog.name}: {where}: init script {name} ({state}) also starts it at boot "
            "(through systemd's SysV generator, which systemd 260 removed); zelador adopts "
            f"what it started. `update-rc.d {name} disable` and leave it to zelador")
