"""Worker threads for what must not run on the loop: checks, alert attempts."""

from __future__ import annotations

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
        self._threads = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, work: Callable[[], Any], done: Done = lambda *_: None) -> None:
        self._jobs.put((work, done))

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            work, done = job
            try:
                result = work()
            except BaseException as exc:
                done(None, exc)
                continue
            done(result, None)
