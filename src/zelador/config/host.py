"""Refuse files a non-root user could modify when zelador runs as root.

A root daemon that runs a script which user `pdv` can edit is a root shell for `pdv`, so the
script, the config and every directory above them must be owned by root and not writable by
group or others. A world-writable directory with the sticky bit (like /tmp) is allowed: others
can add entries there but cannot replace ours.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from typing import Callable

from zelador.config.model import Program
from zelador.errors import UnsafeFileError


def running_as_root() -> bool:
    return os.geteuid() == 0


def check_root_only(path: str, what: str) -> None:
    """Raise UnsafeFileError if `path` or a directory above it is modifiable by a non-root user."""
    real = os.path.realpath(path)
    current = real
    while True:
        try:
            info = os.stat(current)
        except OSError as exc:
            raise UnsafeFileError(f"{what} {path!r}: cannot check {current!r}: {exc.strerror}") from exc
        problem = _problem(info, is_target=current == real)
        if problem:
            fix = f"chown root:root {current} && chmod go-w {current}"
            raise UnsafeFileError(
                f"refusing {what} {path!r}: {current!r} {problem}; a root daemon would run what "
                f"that user writes (fix: {fix})"
            )
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def _problem(info: os.stat_result, *, is_target: bool) -> str:
    if info.st_uid != 0:
        return f"is owned by uid {info.st_uid}"
    sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX and not is_target
    if info.st_mode & stat.S_IWOTH and not sticky_dir:
        return "is writable by others"
    if info.st_mode & stat.S_IWGRP and info.st_gid != 0 and not sticky_dir:
        return f"is writable by group gid {info.st_gid}"
    return ""


def host_problem(program: Program, path: str, what: str = "start") -> str:
    """What on this machine keeps `program` from starting with `path`, or "" if nothing.

    Checked before every launch and by `zelador validate`: the script exists, is an executable
    file, and (as root) no non-root user can modify it; the program's user and group exist.
    """
    if program.user not in (None, "session") and not _exists(pwd.getpwnam, program.user):
        return f"user {program.user!r} does not exist"
    if program.group is not None and not _exists(grp.getgrnam, program.group):
        return f"group {program.group!r} does not exist"
    if not path.startswith("/"):
        return ""
    if not os.path.exists(path):
        return f"{what} script {path!r} does not exist"
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return f"{what} script {path!r} is not an executable file (fix: chmod +x {path})"
    if running_as_root():
        try:
            check_root_only(path, f"{what} script")
        except UnsafeFileError as exc:
            return str(exc)
    return ""


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True
