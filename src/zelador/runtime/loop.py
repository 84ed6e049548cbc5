"""The event loop: one wait per turn on every fd and the nearest timer, then dispatch.

What it owns:
- fd sources: `watch(fd, callback)`; the callback runs on the loop thread when the fd is readable.
- timers: `at(when, callback)` on the injected monotonic clock, cancellable; the nearest one
  bounds the wait.
- signals: `on_signal(signum, callback)`; the handler only notes the signal and wakes the wait
  (`signal.set_wakeup_fd`); the callback runs on the loop thread.
- work from other threads: `post(callback)` is the one thread-safe entry; it queues the callback
  and writes to an eventfd that wakes the wait. Only the loop thread touches supervision state.
- end-of-turn hooks: `after_turn(callback)` runs once after each turn's dispatch, so a consumer
  can handle everything a turn brought in one ordered pass (the supervisor: deaths, then a scan,
  then decisions).

A turn: wait -> ready fds -> signals -> posted work -> due timers -> end-of-turn hooks.

Every callback runs inside an error boundary (`_call`): an exception is caught and counted, the
callback's part (`part=`, else its name) is marked degraded in the health registry
(runtime/degraded.py) with the first traceback of each kind, and the turn goes on; the next
call of that part that returns cleanly clears it. A ready fd whose registration changed during
the turn (unwatched, or closed and its number given to a new watch) is skipped: its readiness
belonged to the old owner.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import queue
import selectors
import signal
import socket
import time
import traceback
from types import FrameType
from typing import Callable

from zelador import early
from zelador.events import Event, Sink
from zelador.runtime.degraded import HEALTH, Health

Callback = Callable[[], None]
COMPACT_MIN = 1024
FD_FAILURES = 3  # an fd whose callback fails this many times in a row is rested ...
FD_REST = 1.0  # ... this long (seconds): a readable fd that fails every time would spin the loop
MAX_KINDS = 512  # distinct failure kinds remembered (each journaled once with its traceback)
Clock = Callable[[], float]


class Timer:
    """A pending `Loop.at` call; `cancel()` makes it never run."""

    __slots__ = ("callback", "cancelled", "part", "when")

    def __init__(self, when: float, callback: Callback, part: str) -> None:
        self.when = when
        self.callback = callback
        self.part = part
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self, clock: Clock = time.monotonic,
                 selector: selectors.BaseSelector | None = None,
                 health: Health | None = None) -> None:
        self.clock = clock
        self.health = HEALTH if health is None else health
        self.errors = 0  # callbacks that raised, since the start
        self._kinds: dict[tuple[str, str, str], str] = {}  # (part, error, where) -> its reason
        self._failing: set[str] = set()  # parts this loop marked degraded
        self._fd_failures: dict[int, int] = {}  # fd -> its callback's failures in a row
        self._resting: dict[int, Timer] = {}  # fd -> when it is watched again
        self._selector = selector or selectors.DefaultSelector()
        # the selector's own fd -> key table (every stdlib selector has one); get_key otherwise
        table = getattr(self._selector, "_fd_to_key", None)
        self._registered: Callable[[int], object] = (
            table.get if isinstance(table, dict) else self._key_of)
        self._timers: list[tuple[float, int, Timer]] = []
        self._compact_at = COMPACT_MIN  # heap size at which cancelled timers are swept out
        self._order = itertools.count()
        self._posted: queue.SimpleQueue[tuple[Callback, str]] = queue.SimpleQueue()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if hasattr(os, "eventfd") else -1
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None
        if self._wake_fd < 0:  # Python < 3.10: a socketpair does the same job
            self._wake_pair = socket.socketpair()
            for end in self._wake_pair:
                end.setblocking(False)
            self._wake_fd = self._wake_pair[0].fileno()
        self._selector.register(self._wake_fd, selectors.EVENT_READ,
                                (self._drain_posted, "loop"))
        self._signal_r, self._signal_w = socket.socketpair()
        self._signal_r.setblocking(False)
        self._signal_w.setblocking(False)
        self._selector.register(self._signal_r, selectors.EVENT_READ,
                                (self._drain_signals, "loop"))
        self._signal_callbacks: dict[int, Callback] = {}
        self._signals_seen: list[int] = []
        self._previous_handlers: dict[int, object] = {}
        self._old_wakeup_fd: int | None = None
        self._after_turn: list[tuple[Callback, str]] = []
        self._stopped = False

    # --- sources ----------------------------------------------------------------------------

    def watch(self, fd: int, callback: Callback, part: str | None = None) -> None:
        """Call `callback` on the loop thread whenever `fd` is readable. An fd number still
        registered is taken from its old owner: that fd was closed without `unwatch` (its owner
        failed), and the number now belongs to whoever opened it last."""
        data = (callback, part or _name(callback))
        self._forget_failures(fd)
        try:
            self._selector.register(fd, selectors.EVENT_READ, data)
        except KeyError:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(fd)
            self._selector.register(fd, selectors.EVENT_READ, data)

    def unwatch(self, fd: int) -> None:
        self._forget_failures(fd)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def _forget_failures(self, fd: int) -> None:
        if self._fd_failures:
            self._fd_failures.pop(fd, None)
        if self._resting:
            timer = self._resting.pop(fd, None)
            if timer is not None:
                timer.cancel()

    def _key_of(self, fd: int) -> object:
        try:
            return self._selector.get_key(fd)
        except (KeyError, ValueError):
            return None

    def watching(self, fd: int) -> bool:
        try:
            self._selector.get_key(fd)
        except (KeyError, ValueError):
            return False
        return True

    def at(self, when: float, callback: Callback, part: str | None = None) -> Timer:
        """Call `callback` once the clock reaches `when`."""
        timer = Timer(when, callback, part or _name(callback))
        heapq.heappush(self._timers, (when, next(self._order), timer))
        if len(self._timers) >= self._compact_at:
            # A timer re-armed per event (a job's next deadline, a client's expiry) leaves the
            # cancelled one in the heap until its moment: a burst of reports would pile up a
            # minute's worth. Sweep them out; doubling the threshold keeps this amortized O(1).
            self._timers = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._compact_at = max(COMPACT_MIN, 2 * len(self._timers))
        return timer

    def on_signal(self, signum: int, callback: Callback) -> None:
        """Run `callback` on the loop thread after `signum` arrives (main thread only)."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._signal_w.fileno())
        self._signal_callbacks[signum] = callback
        self._previous_handlers[signum] = signal.signal(signum, self._note_signal)
        if early.take(signum):  # it came during start-up (zelador/early.py held it): run it now
            self._signals_seen.append(signum)
            with contextlib.suppress(OSError):
                self._signal_w.send(b"\0")

    def after_turn(self, callback: Callback, part: str | None = None) -> None:
        self._after_turn.append((callback, part or _name(callback)))

    def post(self, callback: Callback, part: str | None = None) -> None:
        """Thread-safe: run `callback` on the loop thread soon (wakes the wait)."""
        self._posted.put((callback, part or _name(callback)))
        if self._wake_pair is not None:
            with contextlib.suppress(BlockingIOError):
                self._wake_pair[1].send(b"\0")
        else:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_write(self._wake_fd, 1)

    # --- running ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    def next_deadline(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    def run(self) -> None:
        """Turn until `stop()`."""
        while not self._stopped:
            self.turn()

    def turn(self, max_wait: float | None = None) -> None:
        """One wait (until an fd is ready or the nearest timer; at most `max_wait`), then dispatch."""
        deadline = self.next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - self.clock())
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        registered = self._registered
        for key, _ in self._selector.select(timeout):
            if registered(key.fd) is not key:
                # unwatched during this turn (an earlier callback closed it), or re-registered:
                # the fd number now belongs to a new watch, and this readiness was the old one's
                continue
            if not self._call(*key.data):
                self._fd_failed(key)
            elif self._fd_failures:
                self._fd_failures.pop(key.fd, None)
        self._run_signals()
        self._drain_posted()
        self._run_due_timers()
        for hook, part in self._after_turn:
            self._call(hook, part)

    # --- the error boundary ---------------------------------------------------------------------

    def _call(self, callback: Callback, part: str) -> bool:
        try:
            callback()
        except Exception as exc:  # the boundary: nothing a part does may end the loop
            self.failed(part, exc)
            return False
        if self._failing and part in self._failing:
            self.worked(part)
        return True

    def _fd_failed(self, key: selectors.SelectorKey) -> None:
        """A readable fd whose callback keeps failing would be ready again at once, every turn:
        after FD_FAILURES in a row it rests FD_REST, then is watched again (its owner's
        unwatch or watch meanwhile cancels that)."""
        fd = key.fd
        count = self._fd_failures.get(fd, 0) + 1
        self._fd_failures[fd] = count
        if count < FD_FAILURES:
            return
        self._fd_failures.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)
        self._resting[fd] = self.at(self.clock() + FD_REST,
                                    lambda: self._wake_rested(fd, key.data), "loop")

    def _wake_rested(self, fd: int, data: tuple[Callback, str]) -> None:
        if self._resting.pop(fd, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.register(fd, selectors.EVENT_READ, data)

    def worked(self, part: str) -> None:
        """`part` ran cleanly after failing: clear its degraded mark."""
        self._failing.discard(part)
        self.health.clear(part)

    def failed(self, part: str, exc: BaseException) -> None:
        """Count a failure of `part` caught by the boundary (or by a caller's own guard) and
        mark the part degraded; each kind (part, error, where) keeps its first reason and
        traceback, so a part failing on every turn is one journal line, not a flood."""
        self.errors += 1
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else "?"
        kind = (part, type(exc).__name__, where)
        reason = self._kinds.get(kind)
        detail = None
        if reason is None:
            reason = f"{type(exc).__name__}: {str(exc)[:200]} (at {where})"
            detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            if len(self._kinds) < MAX_KINDS:
                self._kinds[kind] = reason
        self._failing.add(part)
        self.health.mark(part, reason, detail=detail[-4000:] if detail else None)

    def guarded(self, sink: Sink, part: str) -> Sink:
        """`sink` behind the boundary: an emit that raises is counted, not passed to the
        caller (a supervision decision that emits an event is never cut short by a sink)."""
        return _GuardedSink(self, sink, part)

    def close(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
        self._selector.close()
        self._signal_r.close()
        self._signal_w.close()
        if self._wake_pair is not None:
            for end in self._wake_pair:
                end.close()
        else:
            os.close(self._wake_fd)

    # --- inside -----------------------------------------------------------------------------

    def _note_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals_seen.append(signum)

    def _drain_signals(self) -> None:
        with contextlib.suppress(OSError):
            while self._signal_r.recv(64):
                pass

    def _run_signals(self) -> None:
        pending, self._signals_seen = self._signals_seen, []
        for signum in pending:
            callback = self._signal_callbacks.get(signum)
            if callback is not None:
                self._call(callback, f"signal {signal.Signals(signum).name}")

    def _drain_posted(self) -> None:
        if self._wake_pair is not None:
            with contextlib.suppress(OSError):
                while self._wake_pair[0].recv(64):
                    pass
        else:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._wake_fd)
        while True:
            try:
                callback, part = self._posted.get_nowait()
            except queue.Empty:
                return
            self._call(callback, part)

    def _run_due_timers(self) -> None:
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True  # ran: a late cancel() is harmless
                self._call(timer.callback, timer.part)


class _GuardedSink:
    __slots__ = ("_loop", "_part", "_sink")

    def __init__(self, loop: Loop, sink: Sink, part: str) -> None:
        self._loop, self._sink, self._part = loop, sink, part

    def __getattr__(self, name: str) -> object:  # the journal's output_for() and the like
        return getattr(self._sink, name)

    def emit(self, event: Event) -> None:
        try:
            self._sink.emit(event)
        except Exception as exc:
            self._loop.failed(self._part, exc)
        else:
            if self._loop._failing and self._part in self._loop._failing:
                self._loop.worked(self._part)


def _name(callback: Callback) -> str:
    """A part's name for a callback given without one: its function's qualified name."""
    func = getattr(callback, "func", callback)  # functools.partial
    name = getattr(func, "__qualname__", None) or type(func).__name__
    return str(name).replace(".<locals>", "").replace(".<lambda>", "")
