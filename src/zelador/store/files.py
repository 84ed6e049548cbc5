"""zelador's own files and folders: private modes, no symlink ever followed.

zelador runs as root. Its state, runtime and log folders hold what it trusts (state.json, the
databases, the lock, the control socket), so:

- a folder is used only if it, and every folder above it (as written and as resolved), is owned
  by root (or by us) and not writable by anyone else (a sticky folder like /tmp is allowed above
  ours, never as ours); `prepare_dir` creates a missing one with the mode asked for and raises
  `UnsafeFolder` (one line: what, where, the fix) for one a local user could change;
- every file in them is opened with O_NOFOLLOW and checked on its fd (a regular file, ours), its
  mode set on the fd; temporaries get O_EXCL and an unpredictable name (`write_atomic`);
- SQLite files are made before SQLite opens them (`connect_private_sqlite`): the database with
  its mode, the -wal/-shm it already has fixed. SQLite gives the -wal/-shm it makes the
  database's own mode, so none is ever readable by others, whatever the umask.

Once the folder is checked, nobody but root can put a link there, so the window between our
check and SQLite's own open admits no swap.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3

Note = Callable[[str], None]  # says a fixed mode, once


class UnsafeFolder(OSError):
    """A folder (or a file in it) zelador will not use; the text is one line with the fix."""


def _owners() -> tuple[int, ...]:
    return (0, os.geteuid())


def _refusal(path: str, st: os.stat_result, *, own: bool) -> str | None:
    """Why a folder on the way (own=False) or our own folder (own=True) is not safe, or None."""
    if st.st_uid not in _owners():
        return (f"folder {path} is owned by uid {st.st_uid}, not root "
                f"(fix: chown root:root {path})")
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return None  # a link's own mode means nothing; its folder and its target are checked
    sticky = bool(mode & stat.S_ISVTX) and not own
    if mode & stat.S_IWOTH and not sticky:
        return f"folder {path} is writable by others (fix: chmod o-w {path})"
    if mode & stat.S_IWGRP and st.st_gid != 0 and not sticky:
        return f"folder {path} is writable by group {st.st_gid} (fix: chmod g-w {path})"
    return None


def _walk(path: str) -> list[str]:
    """The path and every folder above it."""
    out = []
    path = os.path.abspath(path)
    while True:
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            return out[::-1]
        path = parent


def check_dir(path: str, *, own: bool = True) -> None:
    """Raise UnsafeFolder unless `path` is a folder nobody but root can change (`own`: it is
    ours, so a sticky bit does not make it safe)."""
    for ways, look in ((_walk(path), os.lstat), (_walk(os.path.realpath(path)), os.stat)):
        for at in ways:
            why = _refusal(at, look(at), own=own and at == ways[-1])
            if why:
                raise UnsafeFolder(why)
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise UnsafeFolder(f"{path} is not a folder")


def prepare_dir(path: str, mode: int = 0o700) -> None:
    """Create `path` with `mode` if missing (its missing parents root-only too), then check it."""
    missing = []
    at = os.path.abspath(path)
    while not os.path.lexists(at):
        missing.append(at)
        at = os.path.dirname(at)
    if missing:
        check_dir(at, own=False)  # where we make it: nobody else may swap what we make
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755 if folder != missing[0] else mode)
            os.chmod(folder, 0o755 if folder != missing[0] else mode)  # not the umask's
        except FileExistsError:
            pass  # made by someone else meanwhile: checked below like any other
    check_dir(path)


def open_private(path: str, flags: int, mode: int = 0o600, note: Note | None = None) -> int:
    """An fd on the regular file `path`, opened without following a link there; a file we
    create gets `mode`, an existing one whose mode differs is set to it (and `note` says so)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeFolder(f"{path} is a symbolic link: zelador never follows links in its "
                               f"own folders (remove it: rm {path})") from None
        raise exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFolder(f"{path} is not a regular file (remove it)")
        if st.st_uid not in _owners():
            raise UnsafeFolder(f"{path} is owned by uid {st.st_uid}, not root (remove it)")
        if st.st_mode & 0o7777 != mode:
            os.fchmod(fd, mode)
            if note is not None and not flags & os.O_EXCL:
                note(f"{path} had mode {st.st_mode & 0o7777:04o}; set to {mode:04o}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(path: str, data: bytes, mode: int = 0o600, *, sync: bool = True) -> None:
    """Replace `path` with `data`: a reader (or a crash) sees the old file or the new one. The
    temporary has an unpredictable name and is made with O_EXCL; rename never follows a link."""
    folder = os.path.dirname(path) or "."
    temp = os.path.join(folder, f".{os.path.basename(path)}.{os.urandom(8).hex()}.tmp")
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


SIDE_FILES = ("-wal", "-shm", "-journal")


def prepare_sqlite(path: str, mode: int = 0o600, note: Note | None = None) -> None:
    """Make the database file with `mode` (O_NOFOLLOW) and fix the side files it already has;
    a link at any of them is refused."""
    os.close(open_private(path, os.O_RDWR | os.O_CREAT, mode, note))
    for suffix in SIDE_FILES:
        side = path + suffix
        if os.path.lexists(side):
            os.close(open_private(side, os.O_RDWR, mode, note))


def connect_private_sqlite(path: str, mode: int = 0o600, *, timeout: float,
                           note: Note | None = None) -> sqlite3.Connection:
    """sqlite3.connect (autocommit, usable from the thread that owns it) on a file prepared by
    `prepare_sqlite`."""
    import sqlite3  # here: the CLI imports this module, and most commands need no SQLite

    prepare_sqlite(path, mode, note)
    return sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
