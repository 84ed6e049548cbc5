"""Worker threads for what must not run on the loop: checks, alert attempts."""

from __future__ import annotations

import collections
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, Optional

Done = Callable[[Any, Optional[BaseException]], None]  # 3.9: no `|` outside annotations


class Pool:
    """A fixed set of daemon worker threads running jobs in order: a job stuck until its timeout
    (a probe, an alert attempt) never holds up zelador's own exit, as a ThreadPoolExecutor's
    workers would (they are joined at exit). `done(result, error)` runs on the worker."""

    def __init__(self, workers: int, name: str = "worker") -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Done] | None] = queue.SimpleQueue()
        self._name = name
        self._closed = False
        self.errors = 0  # done() callbacks that raised
        self._threads = [self._thread(i) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _thread(self, number: int) -> threading.Thread:
        return threading.Thread(target=self._run, name=f"{self._name}-{number}", daemon=True)

    def alive(self) -> bool:
        """Every worker runs (or the pool was closed): the daemon's thread watcher asks."""
        return self._closed or all(thread.is_alive() for thread in self._threads)

    def restart(self) -> None:
        """A new thread in place of each dead one; the queued jobs stay queued."""
        for number, thread in enumerate(self._threads):
            if not thread.is_alive() and not self._closed:
                self._threads[number] = self._thread(number)
                self._threads[number].start()

    def submit(self, work: Callable[[], Any], done: Done = lambda *_: None) -> None:
        self._jobs.put((work, done))

    def close(self) -> None:
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, done = job
            error: BaseException | None
            try:
                result = work()
            except BaseException as exc:
                result, error = None, exc
            else:
                error = None
            try:
                done(result, error)
            except Exception:  # a broken callback costs its job (counted), never the worker
                self.errors += 1


class Crew:
    """Threads on demand, at most `most`: a job starts at once on an idle thread or a new one,
    and waits in line only while `most` are busy. So when each of N users keeps at most one job
    in flight and `most` >= N, one user's job that hangs never delays another's. A thread idle
    for `idle` seconds leaves. `done(result, error)` runs on the thread."""

    def __init__(self, most: int, name: str = "worker", idle: float = 60.0) -> None:
        self.most = most
        self.name = name
        self.idle = idle
        self._jobs: collections.deque[tuple[Callable[[], Any], Done]] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._threads = 0  # alive
        self._waiting = 0  # idle, in wait()
        self._made = itertools.count()
        self._closed = False
        self.lost = 0  # results whose `done` raised

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, work: Callable[[], Any], done: Done = lambda *_: None) -> None:
        with self._ready:
            if self._closed:
                return
            self._jobs.append((work, done))
            if self._waiting >= len(self._jobs):
                self._ready.notify()
                return
            if self._threads >= self.most:
                return  # in line: every thread is busy
            self._threads += 1
        threading.Thread(target=self._run, name=f"{self.name}-{next(self._made)}",
                         daemon=True).start()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._jobs.clear()
            self._ready.notify_all()

    def _next(self) -> tuple[Callable[[], Any], Done] | None:
        with self._ready:
            while not self._jobs:
                if self._closed:
                    self._threads -= 1
                    return None
                self._waiting += 1
                woken = self._ready.wait(self.idle)
                self._waiting -= 1
                if not woken and not self._jobs:
                    self._threads -= 1
                    return None
            return self._jobs.popleft()

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            work, done = job
            error: BaseException | None = None
            try:
                result = work()
            except BaseException as exc:
                result, error = None, exc
            try:
                done(result, error)
            except Exception:  # the thread goes on; the count shows in `zelador status`
                self.lost += 1
