"""The history's writer: one thread of its own writes the rows (store/history.py has the schema).

Writing never blocks the supervision loop. `HistoryWriter` is a sink: `emit`, `record_run` and
`record_report` append a row to a queue and return; one thread of its own writes what is there
in batches of up to 2,000 rows, one transaction each, every 0.5 s or at once when someone waits
for it (`barrier`: the TCP intake answers OK only once its reports are committed; group commit,
synchronous=FULL, so one fsync covers every report that arrived meanwhile).

Nothing acknowledged is dropped. Reports are never refused here: the intake stops taking them
while `backlog()` is high (backpressure, its clients wait or are told busy). Events beyond
QUEUE_SIZE waiting are dropped and counted (the journal has them). A failed write is kept and
tried again: "disk full" (SQLITE_FULL) and every other SQLite error, journaled once per condition
and once when it clears; a row that cannot be written at all (a number SQLite cannot hold) is
rejected alone, with its reason. The thread catches everything: it never dies of a row or a
disk, and `alive()`/`restart()` let the daemon watch it anyway.

A file damaged under it is moved aside and a fresh one started. Retention (by age and by row
count per table) runs on the writer thread every 10 minutes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Callable, Union

from zelador.events import Event
from zelador.jobs.states import RunRow
from zelador.store.history import (
    ReportRow,
    Row,
    move_aside,
    open_db,
    trim_to_size,
    write_rows,
)

QUEUE_SIZE = 20_000  # events waiting; beyond it they are dropped (reports never are)
BATCH = 2_000
BATCH_WAIT = 0.5
PRUNE_EVERY = 600.0
PROBLEM_EVERY = 60.0
RETRY_FIRST, RETRY_MOST = 0.2, 5.0  # seconds between attempts at a write that failed


class Barrier:
    """Not a row: `callback` is called (on the writer thread) once every row queued before it
    is committed."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


Queued = Union[Row, Barrier]


class HistoryWriter:
    """The write side: a sink for events plus run and report rows, written by a thread."""

    def __init__(self, path: str, *, keep: float, max_rows: int,
                 on_problem: Callable[[str], None], clock: Callable[[], float] = time.time,
                 keep_bytes: int = 0) -> None:
        self.path = path
        self.keep = keep
        self.max_rows = max_rows
        self.keep_bytes = keep_bytes  # 0: no size cap
        self._on_problem = on_problem
        self._clock = clock
        # a deque, not a queue.Queue: an append is a fraction of a put (no lock, no condition)
        self._rows: collections.deque[Queued] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.dropped = 0  # events lost to a full queue
        self.rejected = 0  # rows SQLite cannot hold at all
        self.trouble: str | None = None  # the condition now (disk full, ...), None when writing
        self._said = 0.0
        self._conn: sqlite3.Connection | None = open_db(path, on_problem)
        row = self._conn.execute("SELECT max(id) FROM reports").fetchone()
        self.next_report = int(row[0] or 0) + 1
        self._thread = self._start()

    def _start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="zelador-history", daemon=True)
        thread.start()
        return thread

    def alive(self) -> bool:
        return self._thread.is_alive()

    def restart(self) -> None:
        """Start the thread again (what was queued stays queued)."""
        if not self._thread.is_alive() and not self._stopping.is_set():
            self._thread = self._start()

    # --- the loop side: never blocks -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._put((self._clock(), event))

    def record_run(self, row: RunRow) -> None:
        self._put(row)

    def record_report(self, row: ReportRow) -> int:
        """Queue a report (never refused: the intake holds back while `backlog()` is high);
        returns its id."""
        ident = row.id if row.id is not None else self.next_report
        self.next_report = max(self.next_report, ident + 1)
        self._rows.append(dataclasses.replace(row, id=ident) if row.id is None else row)
        return ident

    def reserve(self, after: int) -> None:
        """Report ids go on above `after` (a saved state applied up to it; the file may be new)."""
        self.next_report = max(self.next_report, after + 1)

    def barrier(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the writer thread) once what is queued now is committed."""
        self._rows.append(Barrier(callback))
        self._wake.set()

    def backlog(self) -> int:
        return len(self._rows)

    def _put(self, row: Row) -> None:
        if len(self._rows) < QUEUE_SIZE:
            self._rows.append(row)
            return
        self.dropped += 1
        self._problem(f"history queue full ({QUEUE_SIZE} rows): {self.dropped} events dropped "
                      f"so far (they are in the journal); the disk under {self.path} is too slow")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to `timeout`) and stop the thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        if self._rows and not self._thread.is_alive():
            self._on_problem(f"history {self.path}: {len(self._rows)} rows not written at exit "
                             f"({self.trouble or 'the writer stopped'})")

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        pruned = time.monotonic()
        pause = 0.0
        while True:
            try:
                if not self._rows or pause:
                    self._wake.wait(pause or BATCH_WAIT)
                    self._wake.clear()
                stopping = self._stopping.is_set()
                pause = 0.0
                while self._rows:
                    if not self._write_next():
                        pause = min(RETRY_MOST, max(RETRY_FIRST, pause * 2))
                        break
                    if not stopping:
                        break  # one batch, then look at the clock and the stop flag again
                if time.monotonic() - pruned >= PRUNE_EVERY:
                    pruned = time.monotonic()
                    self.prune()
                if stopping and (not self._rows or pause):
                    if self._conn is not None:
                        self._conn.close()
                    return
            except Exception as exc:  # never die: say it, wait, go on
                pause = RETRY_MOST
                self._condition(f"the history writer hit {type(exc).__name__}: {exc}")

    def _write_next(self) -> bool:
        """Write the next batch; False (the batch back at the front) when it could not be."""
        rows = self._rows
        taken: list[Queued] = [rows.popleft() for _ in range(min(BATCH, len(rows)))]
        batch = [row for row in taken if not isinstance(row, Barrier)]
        try:
            if batch:
                self._write(batch)
        except Exception as exc:
            rows.extendleft(reversed(taken))  # kept, in order, for the next attempt
            if not isinstance(exc, (sqlite3.Error, OSError)):  # (those were said already)
                self._condition(f"the history writer hit {type(exc).__name__}: {exc}; the rows "
                                "wait and are tried again")
            return False
        self._cleared()
        for row in taken:
            if isinstance(row, Barrier):
                row.callback()
        return True

    def _write(self, batch: Sequence[Row]) -> None:
        conn = self._conn
        if conn is None:  # reopening failed last time
            conn = self._conn = self._reopen()
        try:
            write_rows(conn, batch)
        except sqlite3.Error as exc:
            _rollback(conn)
            if _disk_full(exc):
                self._condition(f"cannot write history {self.path}: disk full; {len(self._rows)} "
                                "rows wait and are written when there is space (supervision "
                                "goes on)")
                raise
            if isinstance(exc, sqlite3.OperationalError):  # locked, read-only, I/O: try again
                self._condition(f"cannot write history {self.path}: {exc}; the rows wait and "
                                "are tried again (supervision goes on)")
                raise
            if isinstance(exc, (sqlite3.IntegrityError, sqlite3.InterfaceError,
                                sqlite3.ProgrammingError)):
                self._one_by_one(conn, batch)  # one bad row: find it, write the rest
                return
            self._damaged(exc)  # DatabaseError: the file is damaged
            raise
        except (OverflowError, ValueError, TypeError):
            _rollback(conn)
            self._one_by_one(conn, batch)

    def _one_by_one(self, conn: sqlite3.Connection, batch: Sequence[Row]) -> None:
        for row in batch:
            try:
                write_rows(conn, [row])
            except (OverflowError, ValueError, TypeError, sqlite3.IntegrityError,
                    sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
                _rollback(conn)
                self.rejected += 1
                self._problem(f"history {self.path}: a row cannot be stored ({type(exc).__name__}"
                              f": {exc}): {_describe(row)}; {self.rejected} rows refused so far")

    def _damaged(self, exc: Exception) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn is not None:
                self._conn.close()
        self._conn = None
        aside = move_aside(self.path)
        self._on_problem(f"history {self.path} is damaged ({exc}); moved to {aside}, "
                         "starting a new one")

    def _reopen(self) -> sqlite3.Connection:
        try:
            return open_db(self.path, self._on_problem)
        except (sqlite3.Error, OSError) as exc:
            self._condition(f"cannot open history {self.path} again: {exc}; the rows wait and "
                            "are tried again")
            raise

    def prune(self) -> None:
        """Delete rows older than `keep`, then the oldest beyond `max_rows` in each table."""
        cutoff = self._clock() - self.keep
        if self._conn is None:
            return
        try:
            for table, column in (("events", "ts"), ("runs", "COALESCE(ended, started)"),
                                  ("reports", "ts")):
                self._conn.execute(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
                self._conn.execute(
                    f"DELETE FROM {table} WHERE id <= (SELECT id FROM {table} ORDER BY id DESC "
                    "LIMIT 1 OFFSET ?)", (self.max_rows,))
            if self.keep_bytes:
                trim_to_size(self._conn, self.keep_bytes)
        except sqlite3.Error as exc:
            self._problem(f"cannot prune history {self.path}: {exc}")

    def _condition(self, message: str) -> None:
        """A trouble that lasts: said once, and once when it clears."""
        kind = message.split(";")[0]
        if kind != self.trouble:
            self.trouble = kind
            self._on_problem(message)

    def _cleared(self) -> None:
        if self.trouble is not None:
            was, self.trouble = self.trouble, None
            self._on_problem(f"history {self.path} is written again (it was: {was})")

    def _problem(self, message: str) -> None:
        now = time.monotonic()
        if now - self._said >= PROBLEM_EVERY or not self._said:
            self._said = now
            self._on_problem(message)


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction (only if one is open: SQLite may have ended it already)."""
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code == 13 or "full" in str(exc).lower()  # SQLITE_FULL: "database or disk is full"


def _describe(row: Row) -> str:
    if isinstance(row, RunRow):
        return f"run {row.run_id} of job {row.job}"
    if isinstance(row, ReportRow):
        return f"report {row.id} from {row.source}"
    return f"event {row[1].kind}"

