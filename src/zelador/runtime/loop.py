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
from types import FrameType
from typing import Callable

Callback = Callable[[], None]
COMPACT_MIN = 1024
Clock = Callable[[], float]


class Timer:
    """A pending `Loop.at` call; `cancel()` makes it never run."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self, clock: Clock = time.monotonic,
                 selector: selectors.BaseSelector | None = None) -> None:
        self.clock = clock
        self._selector = selector or selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._compact_at = COMPACT_MIN  # heap size at which cancelled timers are swept out
        self._order = itertools.count()
        self._posted: queue.SimpleQueue[Callback] = queue.SimpleQueue()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if hasattr(os, "eventfd") else -1
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None
        if self._wake_fd < 0:  # Python < 3.10: a socketpair does the same job
            self._wake_pair = socket.socketpair()
            for end in self._wake_pair:
                end.setblocking(False)
            self._wake_fd = self._wake_pair[0].fileno()
        self._selector.register(self._wake_fd, selectors.EVENT_READ, self._drain_posted)
        self._signal_r, self._signal_w = socket.socketpair()
        self._signal_r.setblocking(False)
        self._signal_w.setblocking(False)
        self._selector.register(self._signal_r, selectors.EVENT_READ, self._drain_signals)
        self._signal_callbacks: dict[int, Callback] = {}
        self._signals_seen: list[int] = []
        self._previous_handlers: dict[int, object] = {}
        self._old_wakeup_fd: int | None = None
        self._after_turn: list[Callback] = []
        self._stopped = False

    # --- sources ----------------------------------------------------------------------------

    def watch(self, fd: int, callback: Callback) -> None:
        """Call `callback` on the loop thread whenever `fd` is readable."""
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def unwatch(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def watching(self, fd: int) -> bool:
        try:
            self._selector.get_key(fd)
        except (KeyError, ValueError):
            return False
        return True

    def at(self, when: float, callback: Callback) -> Timer:
        """Call `callback` once the clock reaches `when`."""
        timer = Timer(when, callback)
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

    def after_turn(self, callback: Callback) -> None:
        self._after_turn.append(callback)

    def post(self, callback: Callback) -> None:
        """Thread-safe: run `callback` on the loop thread soon (wakes the wait)."""
        self._posted.put(callback)
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
        for key, _ in self._selector.select(timeout):
            key.data()
        self._run_signals()
        self._drain_posted()
        self._run_due_timers()
        for hook in self._after_turn:
            hook()

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
                callback()

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
                callback = self._posted.get_nowait()
            except queue.Empty:
                return
            callback()

    def _run_due_timers(self) -> None:
        now = self.clock()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True  # ran: a late cancel() is harmless
                timer.callback()
