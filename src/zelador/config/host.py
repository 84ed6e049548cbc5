"""Refuse files a non-root user could modify when zelador runs as root.

A root daemon that runs a script which user `pdv` can edit is a root shell for `pdv`. So every
file zelador runs or trusts (scripts, commands, the config and its drop-ins, secrets) is judged
on the path as written, where it is used: walking from `/` one component at a time (openat with
O_NOFOLLOW), every folder, every symlink (and the folder holding it) and each link's target path
in turn must be owned by root and not writable by group (unless the group is root) or others.
A world-writable folder with the sticky bit (like /tmp) is allowed: others can add entries
there but cannot replace root's.

Why that is enough (no swap between the check and the use): once every component of the path
is root-owned and writable by root alone, no non-root user can change what the path names;
only root could, and root needs no tricks. Files that are read (the config, drop-ins, secrets)
are read from the very fd the walk opened and checked. Commands are run by their path, checked
again before every run, so a script's `$0`, a program's name in `ps` and its cmdline stay what
the config says (a name match depends on them); a `#!` script's interpreter is checked too.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from typing import Callable

from zelador.config.model import Program
from zelador.errors import UnsafeFileError

MAX_LINKS = 40  # as the kernel's own limit on symlinks followed in one lookup
READ_CAP = 4 * 1024 * 1024  # a config, drop-in or secret longer than this is refused
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def running_as_root() -> bool:
    return os.geteuid() == 0


def open_checked(path: str, what: str, *, secret: bool = False) -> int:
    """Open `path` by an openat walk from `/` that checks every component on the way (see the
    module's docstring) and the file itself; returns an O_RDONLY fd of that very file.

    Raises UnsafeFileError naming the component and the fix, or OSError (with the component's
    path as its filename) when a component is missing or unreadable. `secret`: the file must not
    be readable by others or a non-root group either."""
    if not path.startswith("/"):  # (`zelador validate -c here.yaml`): the way to here counts
        path = os.path.join(os.getcwd(), path)
    todo = list(reversed(_parts(path)))
    stack = [(os.open("/", _DIR), "/")]
    links = 0
    try:
        _judge(os.fstat(stack[0][0]), "/", "folder", path, what)
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            folder, where = stack[-1]
            here = where.rstrip("/") + "/" + name
            try:
                info = os.stat(name, dir_fd=folder, follow_symlinks=False)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, here) from None
            if stat.S_ISLNK(info.st_mode):
                _judge(info, here, "symlink", path, what)
                links += 1
                if links > MAX_LINKS:
                    raise UnsafeFileError(f"refusing {what} {path!r}: more than {MAX_LINKS} "
                                          f"symlinks on its path (a loop at {here!r}?)")
                target = os.readlink(name, dir_fd=folder)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo.extend(reversed(_parts(target)))
                continue
            last = not todo
            if last and stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), here)
            if last and not stat.S_ISREG(info.st_mode):
                raise UnsafeFileError(f"refusing {what} {path!r}: {here!r} is not a regular file")
            try:
                fd = os.open(name, _FILE if last else _DIR, dir_fd=folder)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, here) from None
            try:
                _judge(os.fstat(fd), here, "file" if last else "folder", path, what,
                       secret=secret)
            except BaseException:
                os.close(fd)
                raise
            if last:
                return fd
            stack.append((fd, here))
        raise UnsafeFileError(f"refusing {what} {path!r}: it names a folder, not a file")
    finally:
        for fd, _ in stack:
            os.close(fd)


def check_root_only(path: str, what: str) -> None:
    """Raise UnsafeFileError if `path` (on its way, or itself) is modifiable by a non-root user,
    or OSError if it cannot be reached. A `#!` script's interpreter is checked the same way."""
    for _ in range(4):  # a script's interpreter, and that one's, for a short chain
        fd = open_checked(path, what)
        try:
            head = os.pread(fd, 256, 0)
        finally:
            os.close(fd)
        interpreter = _interpreter(head)
        if not interpreter:
            return
        path, what = interpreter, f"interpreter of {what} {path!r}"


def read_checked(path: str, what: str = "file", *, secret: bool = False) -> bytes:
    """The file's bytes, as root read from the fd that open_checked walked to and checked (so a
    config, a drop-in or a secret is never read from a file a non-root user could change);
    otherwise a plain read. Raises UnsafeFileError or OSError."""
    fd = open_checked(path, what, secret=secret) if running_as_root() else \
        os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with os.fdopen(fd, "rb", closefd=False) as stream:
            data = stream.read(READ_CAP + 1)
    finally:
        os.close(fd)
    if len(data) > READ_CAP:
        raise OSError(errno.EFBIG, f"larger than {READ_CAP // 1024 // 1024} MiB", path)
    return data


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _interpreter(head: bytes) -> str:
    if not head.startswith(b"#!"):
        return ""
    line = head[2:].split(b"\n", 1)[0].strip()
    first = line.split(None, 1)[0] if line else b""
    return first.decode("utf-8", "replace") if first.startswith(b"/") else ""


def _judge(info: os.stat_result, here: str, kind: str, path: str, what: str, *,
           secret: bool = False) -> None:
    """Raise UnsafeFileError if a non-root user could change this component (or, for a secret,
    read it)."""
    problem = _problem(info, kind, secret)
    if not problem:
        return
    fix = {"symlink": f"chown -h root:root {here}",
           "folder": f"chown root:root {here} && chmod go-w {here}",
           "file": f"chown root:root {here} && chmod {'600' if secret else 'go-w'} {here}"}[kind]
    what_it = (f"{here!r} " if here == path else f"the file {here!r} it leads to "
               if kind == "file" else f"the {kind} {here!r} on its path ")
    why = ("others could read the secret" if "readable" in problem else
           f"a root daemon would {'read' if secret else 'trust'} what that user writes")
    raise UnsafeFileError(f"refusing {what} {path!r}: {what_it}{problem}; {why} (fix: {fix})")


def _problem(info: os.stat_result, kind: str, secret: bool) -> str:
    if info.st_uid != 0:
        return f"is owned by {_owner(info.st_uid)}"
    if kind == "symlink":  # its mode means nothing: who may replace it is its folder's business
        return ""
    sticky = kind == "folder" and info.st_mode & stat.S_ISVTX
    if info.st_mode & stat.S_IWOTH and not sticky:
        return "is writable by others"
    if info.st_mode & stat.S_IWGRP and info.st_gid != 0 and not sticky:
        return f"is writable by group gid {info.st_gid}"
    secret = secret and kind == "file"
    if secret and info.st_mode & stat.S_IROTH:
        return "is readable by others"
    if secret and info.st_mode & stat.S_IRGRP and info.st_gid != 0:
        return f"is readable by group gid {info.st_gid}"
    return ""


def _owner(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def host_problem(program: Program, path: str, what: str = "start") -> str:
    """What on this machine keeps `program` from starting with `path`, or "" if nothing.

    Checked before every launch and by `zelador validate`: the script exists, is an executable
    file, and (as root) no non-root user can modify it or anything on its path; the program's
    user and group exist.
    """
    if program.user not in (None, "session") and not _exists(pwd.getpwnam, program.user):
        return f"user {program.user!r} does not exist"
    if program.group is not None and not _exists(grp.getgrnam, program.group):
        return f"group {program.group!r} does not exist"
    if not path.startswith("/"):
        return ""
    return executable_problem(path, f"{what} script")


def executable_problem(path: str, what: str) -> str:
    """"" if `path` can be run (exists, an executable file, and as root safe on its whole path,
    its `#!` interpreter too), else why not, in one line."""
    if not os.path.exists(path):
        return f"{what} {path!r} does not exist"
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return f"{what} {path!r} is not an executable file (fix: chmod +x {path})"
    if running_as_root():
        try:
            check_root_only(path, what)
        except UnsafeFileError as exc:
            return str(exc)
        except OSError as exc:
            return f"{what} {path!r}: cannot check {exc.filename!r}: {exc.strerror}"
    return ""


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True
