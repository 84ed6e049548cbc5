"""A pidfd per tracked process, so the death of any of them wakes the loop at once.

`os.pidfd_open` (Linux 5.3+) works on processes that are not our children; the fd turns
readable when the process exits. We open it first and check the start time second, so a pid
reused between the scan and the open cannot hand us a stranger.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Callable

from zelador.programs.proctable import alive
from zelador.programs.states import Instance

SUPPORTED = hasattr(os, "pidfd_open")


def open_pidfd(instance: Instance) -> int | None:
    """An fd that turns readable when `instance` exits; None if it is gone or pidfd is missing."""
    if not SUPPORTED:
        return None
    try:
        fd = os.pidfd_open(instance.pid)
    except ProcessLookupError:
        return None
    except OSError:  # ENOSYS on old kernels: the interval scan is then the only way
        return None
    if not alive(instance):
        os.close(fd)
        return None
    return fd


class Watches:
    """The set of tracked instances, each with its pidfd; kept in step with the engine's states."""

    def __init__(self) -> None:
        self.by_fd: dict[int, Instance] = {}
        self._by_instance: dict[Instance, int] = {}
        self.unwatchable: set[Instance] = set()  # gone before we could open, or no pidfd

    def sync(self, wanted: Iterable[Instance],
             before_close: Callable[[int], None] = lambda fd: None) -> list[int]:
        """Open fds for new instances, close those no longer wanted; return the opened fds.

        `before_close(fd)` runs before an fd is closed, to take it out of a selector first.
        """
        wanted_set = set(wanted)
        for instance, fd in list(self._by_instance.items()):
            if instance not in wanted_set:
                before_close(fd)
                self._close(instance, fd)
        self.unwatchable &= wanted_set
        opened = []
        for instance in wanted_set - self._by_instance.keys() - self.unwatchable:
            new_fd = open_pidfd(instance)
            if new_fd is None:
                self.unwatchable.add(instance)
                continue
            self._by_instance[instance] = new_fd
            self.by_fd[new_fd] = instance
            opened.append(new_fd)
        return opened

    def _close(self, instance: Instance, fd: int) -> None:
        del self._by_instance[instance]
        del self.by_fd[fd]
        os.close(fd)

    def close_all(self) -> None:
        for instance, fd in list(self._by_instance.items()):
            self._close(instance, fd)
