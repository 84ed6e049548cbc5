"""The history: every event, job run and raw report, in SQLite (`history.db`, WAL) in the state dir.

Writing never blocks the supervision loop. `HistoryWriter` is a sink: `emit`, `record_run` and
`record_report` append a row to a bounded queue and return; one thread of its own looks every
0.5 s and writes what is there in batches of up to 2,000 rows, one transaction each. When the queue is full
(a disk too slow for the rate of events) a row is dropped and counted; when a write fails (disk
full, the file locked) the batch is dropped and counted. Either way the loop goes on: history
rows are what a slow or full disk costs, never a restart. Problems are said through `on_problem`
(the daemon journals them), once a minute at most.

A file that is not a database, or a damaged one, is moved aside (`history.db.corrupt-<time>`)
and a fresh one started. Retention (by age and by row count per table) runs on the writer
thread every 10 minutes.

Readers (`zelador history`, the status page) open their own connection: WAL lets them read
while the writer writes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

from zelador.events import Event
from zelador.jobs.states import RunRow

FILE = "history.db"
QUEUE_SIZE = 20_000
BATCH = 2_000
BATCH_WAIT = 0.5
PRUNE_EVERY = 600.0
PROBLEM_EVERY = 60.0
RAW_CAP = 4096  # bytes of a raw report line kept
TEXT_CAP = 10 * 1024
WRITER_CACHE_KIB = 512  # the writer appends: SQLite's default 2 MiB page cache buys it nothing

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, subject_kind TEXT,
    subject TEXT, priority INTEGER, message TEXT, fields TEXT);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE INDEX IF NOT EXISTS events_subject ON events (subject, ts);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL,
    started REAL, ended REAL, exit_status INTEGER, duration REAL, message TEXT, output TEXT,
    UNIQUE (job, run_id));
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, source TEXT, job TEXT, verb TEXT,
    accepted INTEGER NOT NULL, reason TEXT, raw TEXT);
CREATE INDEX IF NOT EXISTS reports_ts ON reports (ts);
"""


@dataclass(frozen=True)
class ReportRow:
    """A report as it arrived, accepted or not (`reason` says why not)."""

    ts: float
    source: str
    job: str | None
    verb: str | None
    accepted: bool
    reason: str = ""
    raw: str = ""


Row = Union[tuple[float, Event], RunRow, ReportRow]


def open_db(path: str, on_problem: Callable[[str], None] | None = None) -> sqlite3.Connection:
    """Open (creating) the history; a corrupt file is moved aside and a fresh one started."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        return _connect(path)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        aside = move_aside(path)
        if on_problem is not None:
            on_problem(f"history {path} is damaged ({exc}); moved to {aside}, starting a new one")
        return _connect(path)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=2.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut loses the last batch at most
        conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        conn.executescript(SCHEMA)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o640)
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def move_aside(path: str) -> str:
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path + suffix, aside + suffix)
    return aside


class HistoryWriter:
    """The write side: a sink for events plus run and report rows, written by a thread."""

    def __init__(self, path: str, *, keep: float, max_rows: int,
                 on_problem: Callable[[str], None], clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.keep = keep
        self.max_rows = max_rows
        self._on_problem = on_problem
        self._clock = clock
        # a deque, not a queue.Queue: an append is a fraction of a put (no lock, no condition);
        # the writer looks every BATCH_WAIT instead of being woken per row
        self._rows: collections.deque[Row] = collections.deque()
        self._stopping = threading.Event()
        self.dropped = 0  # rows lost to a full queue or a failed write
        self._said = 0.0
        self._conn = open_db(path, on_problem)
        self._thread = threading.Thread(target=self._run, name="zelador-history", daemon=True)
        self._thread.start()

    # --- the loop side: never blocks -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._put((self._clock(), event))

    def record_run(self, row: RunRow) -> None:
        self._put(row)

    def record_report(self, row: ReportRow) -> None:
        self._put(row)

    def _put(self, row: Row) -> None:
        if len(self._rows) < QUEUE_SIZE:
            self._rows.append(row)
            return
        self.dropped += 1
        self._problem(f"history queue full ({QUEUE_SIZE} rows): {self.dropped} rows dropped "
                      f"so far; the disk under {self.path} is too slow")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to `timeout`) and stop the thread."""
        self._stopping.set()
        self._thread.join(timeout)

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        pruned = time.monotonic()
        while True:
            stopping = (self._stopping.is_set() if self._rows
                        else self._stopping.wait(max(BATCH_WAIT, 0.01)))
            while self._rows:
                rows = self._rows
                batch = [rows.popleft() for _ in range(min(BATCH, len(rows)))]
                self._write(batch)
                if not stopping:
                    break  # one batch, then look at the clock and the stop flag again
            if time.monotonic() - pruned >= PRUNE_EVERY:
                pruned = time.monotonic()
                self.prune()
            if stopping and not self._rows:
                self._conn.close()
                return

    def _write(self, batch: Sequence[Row], again: bool = True) -> None:
        try:
            write_rows(self._conn, batch)
        except sqlite3.OperationalError as exc:  # disk full, locked, read-only: lose this batch
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self.dropped += len(batch)
            self._problem(f"cannot write history {self.path}: {exc}; {self.dropped} rows lost "
                          "so far (supervision goes on)")
        except sqlite3.DatabaseError as exc:  # damaged under us: move it aside, start again
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            aside = move_aside(self.path)
            self._on_problem(f"history {self.path} is damaged ({exc}); moved to {aside}, "
                             "starting a new one")
            self._conn = open_db(self.path, self._on_problem)
            if again:
                self._write(batch, again=False)

    def prune(self) -> None:
        """Delete rows older than `keep`, then the oldest beyond `max_rows` in each table."""
        cutoff = self._clock() - self.keep
        try:
            for table, column in (("events", "ts"), ("runs", "COALESCE(ended, started)"),
                                  ("reports", "ts")):
                self._conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
                self._conn.execute(
                    f"DELETE FROM {table} WHERE id <= (SELECT id FROM {table} ORDER BY id DESC "
                    "LIMIT 1 OFFSET ?)", (self.max_rows,))
        except sqlite3.Error as exc:
            self._problem(f"cannot prune history {self.path}: {exc}")

    def _problem(self, message: str) -> None:
        now = time.monotonic()
        if now - self._said >= PROBLEM_EVERY or not self._said:
            self._said = now
            self._on_problem(message)


def write_rows(conn: sqlite3.Connection, batch: Iterable[Row]) -> None:
    """One transaction for the batch."""
    events, runs, reports = [], [], []
    for row in batch:
        if isinstance(row, RunRow):
            runs.append((row.job, row.run_id, row.state.value, row.started, row.ended,
                         row.exit_status, row.duration, row.message[:TEXT_CAP],
                         row.output[-TEXT_CAP:]))
        elif isinstance(row, ReportRow):
            reports.append((row.ts, row.source, row.job, row.verb, int(row.accepted),
                            row.reason[:TEXT_CAP], row.raw[:RAW_CAP]))
        else:
            ts, ev = row
            fields = json.dumps(dict(ev.fields), ensure_ascii=False) if ev.fields else None
            events.append((ts, ev.kind, ev.subject_kind if ev.subject else None, ev.subject,
                           ev.priority, ev.message[:TEXT_CAP], fields))
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events (ts, kind, subject_kind, subject, priority, message, "
                     "fields) VALUES (?, ?, ?, ?, ?, ?, ?)", events)
    conn.executemany(
        "INSERT INTO runs (job, run_id, state, started, ended, exit_status, duration, message, "
        "output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job, run_id) DO UPDATE SET "
        "state = excluded.state, started = COALESCE(excluded.started, runs.started), "
        "ended = excluded.ended, exit_status = excluded.exit_status, "
        "duration = excluded.duration, message = excluded.message, output = excluded.output",
        runs)
    conn.executemany("INSERT INTO reports (ts, source, job, verb, accepted, reason, raw) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", reports)
    conn.execute("COMMIT")


# --- the read side ------------------------------------------------------------------------------


def read_events(path: str, *, since: float | None = None, name: str | None = None,
                kinds: Sequence[str] = (), limit: int | None = 1000,
                fields: bool = True) -> list[dict[str, Any]]:
    """Events, oldest first: the newest `limit` of those matching (None: all of them); without
    their extra fields (`fields=False`, faster) they come as an empty dict."""
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        where: list[str] = []
        args: list[object] = []
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if name is not None:
            where.append("subject = ?")
            args.append(name)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        sql = ("SELECT ts, kind, subject_kind, subject, priority, message, fields FROM events"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY ts DESC, id DESC LIMIT ?")  # ts: the index, not a scan
        rows = conn.execute(sql, (*args, -1 if limit is None else limit)).fetchall()
    finally:
        conn.close()
    out = []
    for ts, kind, subject_kind, subject, priority, message, extra in reversed(rows):
        out.append({"time": ts, "kind": kind, "subject_kind": subject_kind, "subject": subject,
                    "priority": priority, "message": message,
                    "fields": json.loads(extra) if extra and fields else {}})
    return out


def read_runs(path: str, job: str, limit: int = 20) -> list[dict[str, Any]]:
    """A job's last runs, oldest first."""
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        rows = conn.execute("SELECT run_id, state, started, ended, exit_status, duration, message, "
                            "output FROM runs WHERE job = ? ORDER BY id DESC LIMIT ?",
                            (job, limit)).fetchall()
    finally:
        conn.close()
    keys = ("run_id", "state", "started", "ended", "exit_status", "duration", "message", "output")
    return [dict(zip(keys, row)) for row in reversed(rows)]
