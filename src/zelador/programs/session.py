"""The desktop session a `user: session` program runs in (Monitor, a tray program).

logind keeps its state in small key=value files: /run/systemd/seats/seat0 (`ACTIVE=` the active
session) and /run/systemd/sessions/ID (`UID=`, `USER=`, `TYPE=x11|wayland|tty`, `DISPLAY=`,
`STATE=`, `LEADER=`...). sd-login itself reads them; so does this module, which needs no D-Bus.
`pick` chooses the session, purely, from those texts (unit tests feed recorded ones);
`session_environment` builds the program's environment (DISPLAY, XAUTHORITY from a process of
the session, XDG_RUNTIME_DIR, the session bus); `SessionWatch` tells the loop when any of it
changes, through sd_login_monitor's fd (systemd-python's `systemd.login.Monitor`), or, where that
is unavailable, asks for a look every few seconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

RUN = os.environ.get("ZELADOR_LOGIND_DIR", "/run/systemd")  # another dir: for tests only
GRAPHICAL = ("x11", "wayland", "mir")
FROM_SESSION = ("XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS", "WAYLAND_DISPLAY", "DISPLAY",
                "XDG_CURRENT_DESKTOP", "DESKTOP_SESSION", "LANG", "LANGUAGE")


@dataclass(frozen=True)
class Session:
    id: str
    uid: int
    user: str
    type: str
    display: str = ""
    leader: int = 0
    seat: str = ""


def parse_state(text: str) -> dict[str, str]:
    """logind's state file format: KEY=value lines, # comments."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def pick(seat0: Mapping[str, str] | None, sessions: Mapping[str, Mapping[str, str]]
         ) -> Session | str:
    """The session to run in, or why there is none (shown in `zelador status`).

    seat0's active session, when it is graphical (x11, wayland) and alive; where there is no
    seat0 (a container, a headless terminal with Xvfb), the one active graphical session.
    """
    if seat0 is not None and seat0.get("ACTIVE"):
        active = seat0["ACTIVE"]
        fields = sessions.get(active)
        if fields is None:
            return f"seat0's active session {active} is not readable"
        return _graphical(active, fields) or (
            f"the active session on seat0 ({active}, user {fields.get('USER', '?')}) is "
            f"{fields.get('TYPE', 'of no type')}, not graphical")
    candidates = [s for sid, f in sorted(sessions.items())
                  if f.get("ACTIVE") == "1" and (s := _graphical(sid, f)) is not None]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        return "several graphical sessions are active and none is seat0's: " + ", ".join(
            f"{s.id} ({s.user})" for s in candidates)
    return "nobody is logged in to a graphical session"


def _graphical(sid: str, fields: Mapping[str, str]) -> Session | None:
    if fields.get("TYPE") not in GRAPHICAL or fields.get("STATE") not in ("active", "online"):
        return None
    if fields.get("CLASS", "user") != "user" or not fields.get("UID", "").isdigit():
        return None  # the greeter's own session (CLASS=greeter) is nobody's desktop
    leader = fields.get("LEADER", "0")
    return Session(sid, int(fields["UID"]), fields.get("USER", ""), fields["TYPE"],
                   fields.get("DISPLAY", ""), int(leader) if leader.isdigit() else 0,
                   fields.get("SEAT", ""))


def session_environment(session: Session, found: Mapping[str, str], home: str,
                        runtime_dir_exists: bool) -> dict[str, str]:
    """The variables a GUI program needs in `session` (pure). `found`: the environment of a
    process of the session, where XAUTHORITY and the session bus address are to be had."""
    env = {key: found[key] for key in FROM_SESSION if found.get(key)}
    if session.display:
        env["DISPLAY"] = session.display
    runtime = f"/run/user/{session.uid}"
    if runtime_dir_exists:
        env["XDG_RUNTIME_DIR"] = runtime
        env.setdefault("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime}/bus")
    if "XAUTHORITY" not in env and session.type == "x11":
        env["XAUTHORITY"] = os.path.join(home, ".Xauthority")
    env.update(XDG_SESSION_ID=session.id, XDG_SESSION_TYPE=session.type)
    if session.seat:
        env["XDG_SEAT"] = session.seat
    return env


# --- reading the live system --------------------------------------------------------------------


def current(run: str = RUN) -> Session | str:
    """The session to run in now, read from logind's files (cheap: a few small tmpfs reads)."""
    seat0 = _read(os.path.join(run, "seats", "seat0"))
    sessions: dict[str, dict[str, str]] = {}
    folder = os.path.join(run, "sessions")
    try:
        names = os.listdir(folder)
    except OSError:
        return "logind is not running (no /run/systemd/sessions)"
    for name in names:
        if not name.endswith(".ref"):
            fields = _read(os.path.join(folder, name))
            if fields is not None:
                sessions[name] = fields
    return pick(seat0, sessions)


def environment_of(session: Session) -> dict[str, str]:
    """The program's environment in `session`, from the session leader's (or, failing that,
    another session process's) own environment."""
    import pwd

    try:
        home = pwd.getpwuid(session.uid).pw_dir
    except KeyError:
        home = "/"
    found: dict[str, str] = {}
    for pid in [session.leader, *_session_pids(session)]:
        found = _environ(pid) if pid else {}
        if found.get("XAUTHORITY") or found.get("DBUS_SESSION_BUS_ADDRESS"):
            break
    return session_environment(session, found, home, os.path.isdir(f"/run/user/{session.uid}"))


def _read(path: str) -> dict[str, str] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as stream:
            return parse_state(stream.read())
    except OSError:
        return None


def _session_pids(session: Session) -> list[int]:
    path = (f"/sys/fs/cgroup/user.slice/user-{session.uid}.slice/"
            f"session-{session.id}.scope/cgroup.procs")
    try:
        with open(path, encoding="ascii") as stream:
            return [int(line) for line in stream if line.strip().isdigit()][:20]
    except OSError:
        return []


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as stream:
            data = stream.read(65536)
    except OSError:
        return {}
    out = {}
    for item in data.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out
