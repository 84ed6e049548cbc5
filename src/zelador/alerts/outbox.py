"""The outbox: notices become SQLite rows at once, and threads of their own send them.

The supervision loop only calls `submit` (a queue put) and gets journal events back through
`report` (which the daemon posts to the loop). One thread, the keeper, owns the database: it
writes the rows, picks what is due for each channel, and records each attempt's outcome. Each
channel has a sender thread that does one attempt at a time with the channel's timeout, so a
webhook that hangs delays neither the loop nor the other channels.

Delivery: a row is sent, or tried again after `retry_first`, doubling up to `retry_max` (or the
server's `retry_after`), until `give_up_after` from its creation, when it is marked failed and
that is journaled. Rows of one channel due together (or held back by its rate limit) go out as
one message, at most MAX_ITEMS per message.

Exactly once, and the one gap: a row is marked `sending` before the attempt and `sent` after.
If zelador dies between the server's acceptance and that mark (a window of one local SQLite
write), the row is found `sending` at the next start and sent again: at least once, never lost.
"""

from __future__ import annotations

import collections
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from zelador.alerts import store
from zelador.alerts.incidents import PROBLEM, RECOVERY, REMINDER, Incident, Notice
from zelador.alerts.texts import Item, headline
from zelador.config.durations import format_duration
from zelador.config.model import Alerts, Channel
from zelador.events import Event, event
from zelador.workers import Pool

MAX_ITEMS = 50  # items in one message
PRUNE_EVERY = 600.0
CLOSE_WAIT = 2.0  # at shutdown, how long an attempt under way may finish
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


class _Lane:
    """One channel's sender thread (one attempt at a time) and its rate limit."""

    def __init__(self, channel: Channel, sender: Sender, done: Callable[[str, int, Outcome], None],
                 clock: Callable[[], float]):
        self.channel = channel
        self.sender = sender
        self.busy: int | None = None  # the batch under way
        # when attempts began, stamped on the sender thread as it begins one: the gap a server
        # sees between two messages is never shorter than the limit (read only while not busy)
        self.stamps: collections.deque[float] = collections.deque(maxlen=channel.rate)
        self._done = done
        self._clock = clock
        self._worker = Pool(1, f"alert-{channel.name}")

    def start(self, number: int, batch: Batch) -> None:
        self.busy = number
        self._worker.submit(lambda: self._attempt(batch),
                            lambda outcome, error: self._done(self.channel.name, number, (
                                outcome if error is None else  # a channel bug: a failed attempt
                                Outcome(False, error=f"{type(error).__name__}: {error}"))))

    def _attempt(self, batch: Batch) -> Outcome:
        self.stamps.append(self._clock())
        return self.sender.send(batch)

    def free_at(self, now: float) -> float:
        """When the rate limit lets the next message go."""
        gap = MIN_GAP.get(self.channel.kind, 0.0)
        at = self.stamps[-1] + gap if self.stamps else now
        if len(self.stamps) == self.channel.rate:
            at = max(at, self.stamps[0] + self.channel.per)
        return at

    def stop(self) -> None:
        self._worker.close()
        close = getattr(self.sender, "close", None)  # a sender with a thread of its own
        if close is not None:
            close()


Build = Callable[[Channel], Sender]


class Outbox:
    """The keeper thread over `alerts.db`, and a lane per channel."""

    def __init__(self, path: str, settings: Alerts, *, build: Build, host: str,
                 report: Callable[[Event], None], clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.settings = settings
        self.host = host
        self._build = build
        self._report = report
        self._clock = clock
        self.conn = store.connect(path, note=lambda text: report(event("degraded", text,
                                                                       priority=5)))
        self.conn.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._lanes: dict[str, _Lane] = {}
        self._batches = int(self.conn.execute("SELECT COALESCE(MAX(batch), 0) FROM outbox")
                            .fetchone()[0])  # numbers go on from the last run's
        self._pruned = 0.0
        self.keep = 90 * 86400.0
        self._thread: threading.Thread | None = None

    def restored(self) -> list[Incident]:
        """The incidents open when zelador last stopped (read before the thread starts)."""
        return store.open_incidents(self.conn)

    def start(self) -> None:
        self._set_channels(self.settings)
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    # --- called from the loop thread: queue puts only --------------------------------------------

    def submit(self, notices: list[tuple[Notice, tuple[str, ...]]]) -> None:
        if notices:
            self._inbox.put(("notices", notices))

    def update(self, settings: Alerts) -> None:
        self._inbox.put(("settings", settings))

    def close(self, timeout: float = 5.0) -> None:
        self._inbox.put(("stop", None))
        if self._thread is not None:
            self._thread.join(timeout)
        for lane in self._lanes.values():
            lane.stop()

    # --- the keeper thread --------------------------------------------------------------------

    def _run(self) -> None:
        stopping_at: float | None = None
        while True:
            now = self._clock()
            wait = self._dispatch(now)
            if stopping_at is not None:
                if not any(lane.busy is not None for lane in self._lanes.values()) or \
                        now >= stopping_at:
                    break
                wait = min(wait, 0.05)
            try:
                what, data = self._inbox.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            try:
                if what == "notices":
                    self._record(data, self._clock())
                elif what == "done":
                    channel, number, outcome = data
                    self._finish(channel, number, outcome, self._clock())
                elif what == "settings":
                    self._set_channels(data)
                elif what == "stop":
                    stopping_at = self._clock() + CLOSE_WAIT
            except sqlite3.Error as exc:  # a full disk: say so, keep going with what we have
                self._report(event("degraded", f"alerts store {self.path}: {exc}", priority=3))
        self.conn.close()

    def _set_channels(self, settings: Alerts) -> None:
        self.settings = settings
        wanted = {c.name: c for c in settings.channels}
        for name, lane in list(self._lanes.items()):
            if wanted.get(name) != lane.channel:
                lane.stop()
                del self._lanes[name]
        for name, chan in wanted.items():
            if name not in self._lanes:
                self._lanes[name] = lane = _Lane(chan, self._build(chan), self._lane_done,
                                                 self._clock)
                restore = getattr(lane.sender, "restore", None)  # resends what is still open
                if restore is not None:
                    restore(store.delivered_open(self.conn, name))
        gone = self.conn.execute(
            f"UPDATE outbox SET state = 'failed', last_error = 'channel no longer in the config' "
            f"WHERE state = 'pending' AND channel NOT IN ({','.join('?' * len(wanted))})",
            tuple(wanted)).rowcount
        if gone:
            self._report(event("alert_given_up", f"{gone} unsent alerts dropped: their channel is "
                               "no longer in the config", priority=4))

    def _lane_done(self, channel: str, number: int, outcome: Outcome) -> None:
        self._inbox.put(("done", (channel, number, outcome)))

    def _record(self, notices: list[tuple[Notice, tuple[str, ...]]], now: float) -> None:
        """Incidents and outbox rows for the notices, in one transaction."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for notice, channels in notices:
                self._record_one(notice, channels, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _record_one(self, notice: Notice, channels: tuple[str, ...], now: float) -> None:
        conn, incident = self.conn, notice.incident
        ident = store.open_incident_id(conn, incident.key)
        if notice.phase == PROBLEM or ident is None:
            ident = conn.execute(
                "INSERT INTO incidents (key, subject_kind, subject, problem, opened, message, "
                "reminded) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (incident.key, incident.subject_kind, incident.subject, incident.problem,
                 incident.opened, incident.message, incident.reminded)).lastrowid
        if notice.phase == REMINDER:
            conn.execute("UPDATE incidents SET reminded = ? WHERE id = ?", (notice.at, ident))
        elif notice.phase == RECOVERY:
            conn.execute("UPDATE incidents SET closed = ?, closed_message = ? WHERE id = ?",
                         (notice.at, notice.message, ident))
        item: Item = {"key": incident.key, "phase": notice.phase,
                      "subject_kind": incident.subject_kind, "subject": incident.subject,
                      "problem": incident.problem, "opened": incident.opened,
                      "closed": notice.at if notice.phase == RECOVERY else None, "at": notice.at,
                      "message": notice.message, "first": incident.message, "host": self.host}
        wait = self.settings.group_wait
        for channel in channels:
            phase = notice.phase
            unsent = conn.execute("SELECT id, phase FROM outbox WHERE incident = ? AND channel = ? "
                                  "AND state = 'pending'", (ident, channel)).fetchall()
            if phase == REMINDER and unsent:
                continue  # what is waiting already says it
            if phase == RECOVERY:
                sent = conn.execute("SELECT 1 FROM outbox WHERE incident = ? AND channel = ? "
                                    "AND state IN ('sent', 'sending') LIMIT 1",
                                    (ident, channel)).fetchone()
                if unsent:
                    conn.execute("UPDATE outbox SET state = 'superseded', last_error = "
                                 "'recovered before it was sent' WHERE incident = ? AND "
                                 "channel = ? AND state = 'pending'", (ident, channel))
                if sent is None:
                    phase = "episode"  # never told: one "was down from X to Y"
            row_item = dict(item, phase=phase)
            conn.execute("INSERT INTO outbox (channel, incident, phase, created, due, state, item) "
                         "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                         (channel, ident, phase, now, now + wait, json.dumps(row_item)))

    def _dispatch(self, now: float) -> float:
        """Start what is due on every idle lane; seconds until something else may be."""
        wait = 60.0
        for name, lane in self._lanes.items():
            if lane.busy is not None:
                continue
            first = self.conn.execute("SELECT MIN(due) FROM outbox WHERE channel = ? AND "
                                      "state = 'pending'", (name,)).fetchone()[0]
            if first is None:
                continue
            ready = max(first, lane.free_at(now))
            if ready > now:
                wait = min(wait, ready - now)
                continue
            self._start(lane, now)
        if now - self._pruned > PRUNE_EVERY:
            self._prune(now)
        return wait

    def _start(self, lane: _Lane, now: float) -> None:
        name = lane.channel.name
        self._merge_unsent(name)
        rows = [store.row_of(r) for r in self.conn.execute(
            f"SELECT {store.COLUMNS} FROM outbox WHERE channel = ? AND state = 'pending' AND "
            "(due <= ? OR attempts = 0) ORDER BY id LIMIT ?", (name, now, MAX_ITEMS))]
        self._batches += 1
        number = self._batches
        ids = [r.id for r in rows]
        self.conn.execute(f"UPDATE outbox SET state = 'sending', batch = ? WHERE id IN "
                          f"({','.join('?' * len(ids))})", (number, *ids))
        lane.start(number, Batch(name, [r.item for r in rows], self._previous(name, rows)))

    def _merge_unsent(self, channel: str) -> None:
        """A recovery waiting behind its own problem (whose attempt failed after the recovery
        was written): the problem is superseded, and the recovery says both, as an episode."""
        pairs = self.conn.execute(
            "SELECT DISTINCT r.id, r.item FROM outbox r JOIN outbox p ON p.incident = r.incident "
            "AND p.channel = r.channel WHERE r.channel = ? AND r.state = 'pending' AND "
            "r.phase = 'recovery' AND p.state = 'pending' AND p.phase IN ('problem', 'reminder')",
            (channel,)).fetchall()
        for ident, item_json in pairs:
            incident = self.conn.execute("SELECT incident FROM outbox WHERE id = ?",
                                         (ident,)).fetchone()[0]
            self.conn.execute("UPDATE outbox SET state = 'superseded', last_error = 'recovered "
                              "before it was sent' WHERE incident = ? AND channel = ? AND "
                              "state = 'pending' AND phase IN ('problem', 'reminder')",
                              (incident, channel))
            told = self.conn.execute("SELECT 1 FROM outbox WHERE incident = ? AND channel = ? AND "
                                     "phase = 'problem' AND state IN ('sent', 'sending')",
                                     (incident, channel)).fetchone()
            if told is None:
                item = dict(json.loads(item_json), phase="episode")
                self.conn.execute("UPDATE outbox SET phase = 'episode', item = ? WHERE id = ?",
                                  (json.dumps(item), ident))

    def _previous(self, channel: str, rows: list[store.Row]) -> list[Previous]:
        """The sent messages about the incidents that recover in `rows`."""
        incidents = [r.incident for r in rows if r.phase == RECOVERY and r.incident is not None]
        if not incidents:
            return []
        refs = self.conn.execute(
            f"SELECT DISTINCT ref, sent FROM outbox WHERE channel = ? AND state = 'sent' AND "
            f"ref IS NOT NULL AND phase IN ('problem', 'reminder') AND incident IN "
            f"({','.join('?' * len(incidents))})", (channel, *incidents)).fetchall()
        out = []
        for ref, sent in refs:
            items = []
            for item_json, closed in self.conn.execute(
                    "SELECT o.item, i.closed FROM outbox o LEFT JOIN incidents i ON i.id = "
                    "o.incident WHERE o.channel = ? AND o.ref = ? AND o.phase IN ('problem', "
                    "'reminder') ORDER BY o.id", (channel, ref)):
                items.append(dict(json.loads(item_json), closed=closed))
            out.append(Previous(ref, sent, items))
        return out

    def _finish(self, channel: str, number: int, outcome: Outcome, now: float) -> None:
        lane = self._lanes.get(channel)
        if lane is not None and lane.busy == number:
            lane.busy = None
        rows = [store.row_of(r) for r in self.conn.execute(
            f"SELECT {store.COLUMNS} FROM outbox WHERE batch = ? AND state = 'sending'",
            (number,))]
        if not rows:
            return
        ids = [r.id for r in rows]
        marks = ",".join("?" * len(ids))
        subject = _subject(rows)
        what = headline(rows[0].item) if len(rows) == 1 else f"{len(rows)} alerts"
        if outcome.ok:
            self.conn.execute(f"UPDATE outbox SET state = 'sent', sent = ?, ref = ?, attempts = "
                              f"attempts + 1, last_error = NULL WHERE id IN ({marks})",
                              (now, outcome.ref, *ids))
            note = f" ({outcome.note})" if outcome.note else ""
            self._report(event("alert_sent", f"alert sent to {channel}: {what}{note}", priority=6,
                               channel=channel, attempts=rows[0].attempts + 1,
                               items=len(rows), **subject))
            return
        attempts = max(r.attempts for r in rows) + 1
        oldest = min(r.created for r in rows)
        if now - oldest >= self.settings.give_up_after:
            self.conn.execute(f"UPDATE outbox SET state = 'failed', attempts = attempts + 1, "
                              f"last_error = ? WHERE id IN ({marks})", (outcome.error, *ids))
            self._report(event("alert_given_up", f"gave up sending to {channel} after "
                               f"{format_duration(now - oldest)} and {attempts} attempts: {what}; "
                               f"last error: {outcome.error}", priority=3, channel=channel,
                               attempts=attempts, items=len(rows), **subject))
            return
        delay = min(self.settings.retry_first * 2 ** (attempts - 1), self.settings.retry_max)
        if outcome.retry_after is not None:
            delay = max(outcome.retry_after, 0.0)
        self.conn.execute(f"UPDATE outbox SET state = 'pending', due = ?, attempts = attempts + 1,"
                          f" last_error = ? WHERE id IN ({marks})",
                          (now + delay, outcome.error, *ids))
        self._report(event("alert_failed", f"sending to {channel} failed (attempt {attempts}, "
                           f"next in {format_duration(delay)}): {outcome.error}", priority=4,
                           channel=channel, attempts=attempts, items=len(rows), **subject))

    def _prune(self, now: float) -> None:
        self._pruned = now
        cutoff = now - self.keep
        self.conn.execute("DELETE FROM outbox WHERE state NOT IN ('pending', 'sending') AND "
                          "created < ?", (cutoff,))
        self.conn.execute("DELETE FROM incidents WHERE closed IS NOT NULL AND closed < ? AND id "
                          "NOT IN (SELECT incident FROM outbox WHERE incident IS NOT NULL)",
                          (cutoff,))


def _subject(rows: list[store.Row]) -> dict[str, Any]:
    """The event's subject field when every row is about one subject."""
    subjects = {(r.item["subject_kind"], r.item["subject"]) for r in rows}
    if len(subjects) != 1:
        return {}
    kind, name = subjects.pop()
    return {"subject": name, "subject_kind": kind}
