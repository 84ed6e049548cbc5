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

Faults of its own: no SQLite error ends the keeper (a full disk, a lock held past 5 s, an I/O
error, a damaged row). What failed is tried again (1 s, doubling to 30 s) and said once per
condition ("disk full" for SQLITE_FULL), and once when it clears. Notices wait in memory (up to
MAX_HELD) until they are rows: one raised while the disk is full is stored and sent when space
returns. `submit` never blocks and never queues without bound. `alive()`/`restart()` let the
daemon watch the keeper and the lanes.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from zelador.alerts import store
from zelador.alerts.incidents import PROBLEM, RECOVERY, REMINDER, Incident, Notice
from zelador.alerts.lanes import Batch, Lane, Outcome, Previous, Sender
from zelador.alerts.texts import Item, headline
from zelador.config.durations import format_duration
from zelador.config.model import Alerts, Channel
from zelador.events import Event, event

__all__ = ["Batch", "Build", "Outbox", "Outcome", "Previous", "Sender"]

MAX_ITEMS = 50  # items in one message
PRUNE_EVERY = 600.0
CLOSE_WAIT = 2.0  # at shutdown, how long an attempt under way may finish
MAX_HELD = 10_000  # notices waiting in memory for the store (a full disk, a dead keeper)
RECORD_BATCH = 500  # notices per transaction
RETRY_FIRST = 1.0  # after a failed store operation; doubling
RETRY_MAX = 30.0

Held = tuple[Notice, tuple[str, ...]]


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
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # notices not yet rows: the loop appends, only the keeper removes (once they are rows)
        self._held: collections.deque[Held] = collections.deque()
        self._held_lock = threading.Lock()
        self._woken = False  # a "notices" wake-up is in the inbox
        self.dropped = 0  # notices beyond MAX_HELD (said, counted)
        self._lanes: dict[str, Lane] = {}
        self._finishing: list[tuple[str, int, Outcome]] = []  # outcomes not yet recorded
        self._batches = 0
        self._pruned = 0.0
        self.keep = 90 * 86400.0
        self.failing: str | None = None  # the store's trouble, said once until it clears
        self._retry = RETRY_FIRST
        self._stopping_at: float | None = None
        self._new_settings: Alerts | None = None
        self._thread: threading.Thread | None = None
        self.conn: sqlite3.Connection | None = None
        try:
            self._open()
        except sqlite3.OperationalError as exc:  # a full disk: the keeper opens it when it can
            self._guarded(self._raise(exc), 0.0)  # (said once; notices wait in memory)

    def _connect(self) -> sqlite3.Connection:
        return store.connect(self.path, note=lambda text: self._report(
            event("degraded", text, priority=5)))

    def _open(self) -> None:
        conn = self._connect()
        try:
            conn.execute("UPDATE outbox SET state = 'pending' WHERE state = 'sending'")
            self._batches = max(self._batches, int(conn.execute(
                "SELECT COALESCE(MAX(batch), 0) FROM outbox").fetchone()[0]))  # go on from there
        except BaseException:
            conn.close()
            raise
        self.conn = conn

    @staticmethod
    def _raise(exc: BaseException) -> Callable[[float], float]:
        def again(_: float) -> float:
            raise exc
        return again

    def restored(self) -> list[Incident]:
        """The incidents open when zelador last stopped (read before the thread starts; none
        while the store cannot be opened)."""
        return [] if self.conn is None else store.open_incidents(self.conn)

    def start(self) -> None:
        self._new_settings = self.settings  # the lanes are made by the keeper's first turn
        self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    # --- called from the loop thread: never blocks ----------------------------------------------

    def submit(self, notices: list[Held]) -> None:
        if not notices:
            return
        with self._held_lock:
            room = MAX_HELD - len(self._held)
            self._held.extend(notices[:max(room, 0)])
            lost = len(notices) - max(room, 0)
            wake = not self._woken
            self._woken = True
        if lost > 0:
            self.dropped += lost
            self._report(event("degraded", f"alerts: {lost} notices dropped ({self.dropped} so "
                               f"far): {MAX_HELD} already wait for {self.path}", priority=3))
        if wake:
            self._inbox.put(("notices", None))

    def update(self, settings: Alerts) -> None:
        self._inbox.put(("settings", settings))

    def alive(self) -> bool:
        """The keeper and every lane's thread are running (or were stopped on purpose)."""
        keeper = self._thread is None or self._thread.is_alive() or self._stopping_at is not None
        return keeper and all(lane.alive() for lane in list(self._lanes.values()))

    def restart(self) -> list[str]:
        """Start again what ended (nothing held is lost); the names of what was restarted."""
        again = [f"alert sender {name}" for name, lane in list(self._lanes.items())
                 if lane.restart()]
        if self._thread is not None and not self._thread.is_alive() and \
                self._stopping_at is None:
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
            self._thread.start()
            again.append("alert outbox keeper")
        return again

    def close(self, timeout: float = 5.0) -> None:
        self._inbox.put(("stop", None))
        if self._thread is not None:
            self._thread.join(timeout)
        for lane in self._lanes.values():
            lane.stop()
        if self._thread is None or not self._thread.is_alive():
            self._close_conn()

    # --- the keeper thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            now = self._clock()
            wait = self._guarded(self._turn, now)
            if self._stopping_at is not None:
                idle = not any(lane.busy is not None for lane in self._lanes.values())
                if (idle and not self._held and not self._finishing) or \
                        now >= self._stopping_at:
                    break
                wait = min(wait, 0.05)
            try:
                what, data = self._inbox.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            if what == "notices":
                with self._held_lock:
                    self._woken = False
            elif what == "done":
                self._finishing.append(data)
            elif what == "settings":
                self.settings = self._new_settings = data  # applied by the next turn
            elif what == "stop":
                self._stopping_at = self._clock() + CLOSE_WAIT
        self._close_conn()

    def _close_conn(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _turn(self, now: float) -> float:
        """Store what waits, record outcomes, start what is due; seconds until the next look."""
        if self.conn is None:
            self._open()
        if self._new_settings is not None:
            self._set_channels(self._new_settings)
            self._new_settings = None
        while self._finishing:
            self._finish(*self._finishing[0], self._clock())
            self._finishing.pop(0)
        while self._held:
            with self._held_lock:
                notices = list(itertools.islice(self._held, RECORD_BATCH))
            self._record(notices, now)
            with self._held_lock:
                for _ in notices:
                    self._held.popleft()
        wait = self._dispatch(now)
        if self.failing is not None:
            self._report(event("degraded", f"alerts store {self.path} works again "
                               f"(after: {self.failing})", priority=5))
            self.failing = None
        self._retry = RETRY_FIRST
        return wait

    def _guarded(self, work: Callable[[float], float], now: float) -> float:
        """Run `work`; any error is said once per condition and tried again after a backoff."""
        try:
            return work(now)
        except Exception as exc:
            conn = self.conn
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # gone already: say the first error
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.DatabaseError) and \
                    not isinstance(exc, sqlite3.OperationalError):
                self._close_conn()  # damaged or replaced: open it again at the next try
            text = describe(exc)
            if text != self.failing:
                self.failing = text
                held = len(self._held)
                self._report(event("degraded", f"alerts store {self.path}: {text}; trying again "
                                   f"in {format_duration(self._retry)} ({held} notices wait in "
                                   "memory; supervision goes on)", priority=3))
            wait = self._retry
            self._retry = min(self._retry * 2, RETRY_MAX)
            return wait

    def _set_channels(self, settings: Alerts) -> None:
        assert self.conn is not None
        self.settings = settings
        wanted = {c.name: c for c in settings.channels}
        for name, lane in list(self._lanes.items()):
            if wanted.get(name) != lane.channel:
                lane.stop()
                del self._lanes[name]
        for name, chan in wanted.items():
            if name not in self._lanes:
                self._lanes[name] = lane = Lane(chan, self._build(chan), self._lane_done,
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

    def _record(self, notices: list[Held], now: float) -> None:
        """Incidents and outbox rows for the notices, in one transaction (rolled back by
        `_guarded` if it fails: the notices stay held)."""
        assert self.conn is not None
        self.conn.execute("BEGIN IMMEDIATE")
        for notice, channels in notices:
            self._record_one(notice, channels, now)
        self.conn.execute("COMMIT")

    def _record_one(self, notice: Notice, channels: tuple[str, ...], now: float) -> None:
        assert self.conn is not None
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
        assert self.conn is not None
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

    def _start(self, lane: Lane, now: float) -> None:
        assert self.conn is not None
        name = lane.channel.name
        store.merge_unsent(self.conn, name)
        rows = []
        for values in self.conn.execute(
                f"SELECT {store.COLUMNS} FROM outbox WHERE channel = ? AND state = 'pending' AND "
                "(due <= ? OR attempts = 0) ORDER BY id LIMIT ?", (name, now, MAX_ITEMS)
                ).fetchall():
            try:
                rows.append(store.row_of(values))
            except (ValueError, TypeError) as exc:  # a damaged row: set aside, said, not sent
                self.conn.execute("UPDATE outbox SET state = 'failed', last_error = ? WHERE "
                                  "id = ?", (f"damaged row: {exc}", values[0]))
                self._report(event("alert_given_up", f"alert {values[0]} for {name} is damaged "
                                   f"in {self.path} ({exc}); it cannot be sent", priority=3,
                                   channel=name))
        if not rows:
            return
        self._batches += 1
        number = self._batches
        ids = [r.id for r in rows]
        self.conn.execute(f"UPDATE outbox SET state = 'sending', batch = ? WHERE id IN "
                          f"({','.join('?' * len(ids))})", (number, *ids))
        lane.start(number, Batch(name, [r.item for r in rows], store.previous(self.conn, name, rows)))

    def _finish(self, channel: str, number: int, outcome: Outcome, now: float) -> None:
        """Record an attempt's outcome; the lane stays busy until it is recorded."""
        assert self.conn is not None
        self._finish_rows(channel, number, outcome, now)  # may raise: tried again later
        lane = self._lanes.get(channel)
        if lane is not None and lane.busy == number:
            lane.busy = None

    def _finish_rows(self, channel: str, number: int, outcome: Outcome, now: float) -> None:
        assert self.conn is not None
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
        assert self.conn is not None
        self._pruned = now
        cutoff = now - self.keep
        self.conn.execute("DELETE FROM outbox WHERE state NOT IN ('pending', 'sending') AND "
                          "created < ?", (cutoff,))
        self.conn.execute("DELETE FROM incidents WHERE closed IS NOT NULL AND closed < ? AND id "
                          "NOT IN (SELECT incident FROM outbox WHERE incident IS NOT NULL)",
                          (cutoff,))


def describe(exc: BaseException) -> str:
    """A store error as one line; SQLITE_FULL is "disk full", SQLITE_BUSY says it waited."""
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, sqlite3.Error):
        return f"{type(exc).__name__}: {text}"
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    if name == "SQLITE_FULL" or "is full" in text:
        return f"disk full ({text})"
    if name == "SQLITE_BUSY" or "is locked" in text:
        return f"{text} (another process held it for over 5 s)"
    return text


def _subject(rows: list[store.Row]) -> dict[str, Any]:
    """The event's subject field when every row is about one subject."""
    subjects = {(r.item["subject_kind"], r.item["subject"]) for r in rows}
    if len(subjects) != 1:
        return {}
    kind, name = subjects.pop()
    return {"subject": name, "subject_kind": kind}
