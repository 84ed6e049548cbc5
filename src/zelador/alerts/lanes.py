"""What the outbox hands a channel and gets back, and a channel's sender thread (a lane).

A lane does one attempt at a time on a thread of its own, with the channel's timeout, so a
webhook that hangs delays neither the loop nor the other channels. Nothing a channel does ends
the thread (an exception is a failed attempt); a thread that ends anyway is seen by `alive()`
and started again by `restart()`, and the batch it held goes back to the keeper as a failed
attempt (its rows are tried again, never lost).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from zelador.alerts.texts import Item
from zelador.config.model import Channel

MIN_GAP = {"telegram": 1.0}  # Telegram: about one message a second per chat


@dataclass(frozen=True)
class Previous:
    """An earlier message the recoveries in a batch are about (to delete or edit it)."""

    ref: str
    sent: float
    items: list[Item]  # each with "closed" set when its incident is closed


@dataclass(frozen=True)
class Batch:
    channel: str
    items: list[Item]
    previous: list[Previous] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    ref: str | None = None  # what identifies the message there (Telegram chat:id, a Message-ID)
    error: str = ""  # the server's answer, secrets removed
    retry_after: float | None = None  # the server asked us to wait this long
    note: str = ""  # e.g. "deleted the problem message"


class Sender(Protocol):
    """A channel: one attempt, bounded by its own timeout; never raises."""

    def send(self, batch: Batch) -> Outcome: ...


Done = Callable[[str, int, Outcome], None]


class Lane:
    """One channel's sender thread (one attempt at a time) and its rate limit."""

    def __init__(self, channel: Channel, sender: Sender, done: Done,
                 clock: Callable[[], float]) -> None:
        self.channel = channel
        self.sender = sender
        self.busy: int | None = None  # the batch under way (the keeper's view)
        # when attempts began, stamped on the sender thread as it begins one: the gap a server
        # sees between two messages is never shorter than the limit (read only while not busy)
        self.stamps: collections.deque[float] = collections.deque(maxlen=channel.rate)
        self._done = done
        self._clock = clock
        self._jobs: queue.SimpleQueue[tuple[int, Batch] | None] = queue.SimpleQueue()
        self._held: int | None = None  # the batch the thread took and has not answered yet
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.restart()

    def start(self, number: int, batch: Batch) -> None:
        self.busy = number
        with self._lock:
            self._held = number  # from now until its outcome is handed over
        self._jobs.put((number, batch))

    def alive(self) -> bool:
        return self._stopped or (self._thread is not None and self._thread.is_alive())

    def restart(self) -> bool:
        """Start the thread if it is not running; a batch it held comes back as failed. True
        if it had to be started again (not the first time)."""
        if self.alive():
            return False
        again = self._thread is not None
        with self._lock:
            lost, self._held = self._held, None
        self._thread = threading.Thread(target=self._run, name=f"alert-{self.channel.name}",
                                        daemon=True)
        self._thread.start()
        if lost is not None:
            self._done(self.channel.name, lost, Outcome(False, error="the sender thread ended "
                                                        "during the attempt; trying again"))
        return again

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            number, batch = job
            self.stamps.append(self._clock())
            try:
                outcome = self.sender.send(batch)
            except Exception as exc:  # a channel bug: a failed attempt
                outcome = Outcome(False, error=f"{type(exc).__name__}: {exc}")
            outcome = self._cleaned(outcome)
            with self._lock:
                if self._held != number:
                    continue  # given back as failed by restart() meanwhile
                self._held = None
            self._done(self.channel.name, number, outcome)

    def _cleaned(self, outcome: Outcome) -> Outcome:
        """The outcome with the channel's secrets removed (its `clean`, if it has one): what
        it says goes to the journal, the history and alerts.db."""
        clean = getattr(self.sender, "clean", None)
        if clean is None or not (outcome.error or outcome.note):
            return outcome
        try:
            return replace(outcome, error=clean(outcome.error), note=clean(outcome.note))
        except Exception as exc:  # a bug in clean: say nothing the server said
            return replace(outcome, error=f"(its error could not be cleaned of secrets: "
                           f"{type(exc).__name__})", note="")

    def free_at(self, now: float) -> float:
        """When the rate limit lets the next message go."""
        gap = MIN_GAP.get(self.channel.kind, 0.0)
        at = self.stamps[-1] + gap if self.stamps else now
        if len(self.stamps) == self.channel.rate:
            at = max(at, self.stamps[0] + self.channel.per)
        return at

    def stop(self) -> None:
        self._stopped = True
        self._jobs.put(None)
        close = getattr(self.sender, "close", None)  # a sender with a thread of its own
        if close is not None:
            close()
