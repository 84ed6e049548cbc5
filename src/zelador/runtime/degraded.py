"""Which parts of zelador are degraded, and why: a tiny registry any thread may write.

A part that stops working as it should (a callback that raised, a dead thread, a full disk) is
`mark(part, reason)`ed; once it works again it is `clear(part)`ed. `zelador status`, /api/status
and /metrics (`zelador_degraded{part=...}`) show what is marked. Each change becomes one journal
line, emitted by the daemon on the loop thread (`changes()`), so marking is cheap and safe from
any thread and a part that fails a thousand times says so once.

    from zelador.runtime import degraded
    degraded.mark("history", "disk full: cannot write history.db")   # from the writer thread
    degraded.clear("history")                                          # once a write succeeds
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from zelador.events import Event

MAX_CHANGES = 256  # journal lines held between two turns; more are counted, not kept
QUIET = 60.0  # a part failing the same way again within this long after it was said: not said


@dataclass(frozen=True)
class Part:
    name: str
    reason: str
    since: float  # wall time of the first mark (for people)
    count: int = 1  # how many times it was marked since it last worked
    said: bool = True  # journaled (a quiet re-mark's recovery is quiet too)


class Health:
    """The registry (thread-safe). `HEALTH` below is the daemon's; tests may make their own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parts: dict[str, Part] = {}
        self._changes: list[Event] = []
        self._lost = 0
        self._said_at: dict[tuple[str, str], float] = {}  # (part, reason) -> when it was said

    def mark(self, part: str, reason: str, *, detail: str | None = None) -> None:
        """`part` does not work: `reason` is one line; `detail` (a traceback) goes in the
        journal's ZELADOR_DETAIL field. A new reason is journaled; the same one only counted."""
        with self._lock:
            old = self._parts.get(part)
            if old is not None and old.reason == reason:
                self._parts[part] = replace(old, count=old.count + 1)
                return
            now = time.monotonic()
            said = now - self._said_at.get((part, reason), -QUIET) >= QUIET
            self._parts[part] = Part(part, reason, time.time(),
                                     1 if old is None else old.count + 1, said)
            if not said:  # it flaps (fails, works, fails ...): say it once a minute at most
                return
            if len(self._said_at) >= MAX_CHANGES:
                self._said_at.clear()
            self._said_at[(part, reason)] = now
            self._say(Event("degraded", f"{part} is degraded: {reason}", priority=3)
                      .with_fields(part=part, detail=detail))

    def clear(self, part: str) -> None:
        """`part` works again (a no-op when it was not marked)."""
        if part not in self._parts:  # the common case, without the lock
            return
        with self._lock:
            old = self._parts.pop(part, None)
            if old is not None and old.said:
                self._say(Event("recovered", f"{part} works again (it was degraded: "
                                f"{old.reason}; {old.count} time(s))", priority=5)
                          .with_fields(part=part))

    def is_degraded(self, part: str) -> bool:
        return part in self._parts

    def status(self) -> list[dict[str, object]]:
        """What is degraded, by part name: for `zelador status`, /api/status and /metrics."""
        with self._lock:
            parts = sorted(self._parts.values(), key=lambda p: p.name)
        return [{"part": p.name, "reason": p.reason, "since": p.since, "count": p.count}
                for p in parts]

    def changes(self) -> list[Event]:
        """The journal lines due since the last call (the daemon emits them on its loop)."""
        if not self._changes and not self._lost:
            return []
        with self._lock:
            out, self._changes = self._changes, []
            if self._lost:
                out.append(Event("degraded", f"{self._lost} more degraded/recovered lines were "
                                 "left out (too many at once)", priority=4))
                self._lost = 0
        return out

    def _say(self, event: Event) -> None:
        if len(self._changes) < MAX_CHANGES:
            self._changes.append(event)
        else:
            self._lost += 1


HEALTH = Health()
mark = HEALTH.mark
clear = HEALTH.clear
