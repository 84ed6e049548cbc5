"""The history: every event, job run and report, in SQLite (`history.db`, WAL) in the state dir.

This module has the schema, opening (a corrupt file is moved aside, `history.db.corrupt-<time>`,
and a fresh one started), one batch's transaction (`write_rows`) and the read side. The writer
thread, and what it does when the disk is slow, full or damaged, is store/historywriter.py.

Readers (`zelador history`, the status page) open their own connection: WAL lets them read
while the writer writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Union

from zelador.events import Event
from zelador.jobs.states import RunRow
from zelador.store.files import connect_private_sqlite

FILE = "history.db"
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
MIGRATIONS = (("reports", "report", "TEXT"),)  # columns added since the first schema


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
    id: int | None = None  # given by the writer; a saved state says up to which one it applied
    report: str | None = None  # an accepted report as JSON, to apply again after a crash


Row = Union[tuple[float, Event], RunRow, ReportRow]


def open_db(path: str, on_problem: Callable[[str], None] | None = None) -> sqlite3.Connection:
    """Open (creating) the history; a corrupt file is moved aside and a fresh one started."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        return _connect(path, on_problem)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        aside = move_aside(path)
        if on_problem is not None:
            on_problem(f"history {path} is damaged ({exc}); moved to {aside}, starting a new one")
        return _connect(path, on_problem)


def _connect(path: str, on_problem: Callable[[str], None] | None = None) -> sqlite3.Connection:
    # 0600 (and so its -wal/-shm): root reads it (`zelador history`, the status page)
    conn = connect_private_sqlite(path, 0o600, timeout=2.0, note=on_problem)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk: reports are answered OK
        conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        conn.executescript(SCHEMA)
        _migrate(conn)
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in MIGRATIONS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def move_aside(path: str) -> str:
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.replace(path + suffix, aside + suffix)
    return aside


def write_rows(conn: sqlite3.Connection, batch: Iterable[Row]) -> None:
    """One transaction for the batch."""
    events, runs, reports = [], [], []
    for row in batch:
        if isinstance(row, RunRow):
            runs.append((row.job, row.run_id, row.state.value, row.started, row.ended,
                         row.exit_status, row.duration, row.message[:TEXT_CAP],
                         row.output[-TEXT_CAP:]))
        elif isinstance(row, ReportRow):
            reports.append((row.id, row.ts, row.source, row.job, row.verb, int(row.accepted),
                            row.reason[:TEXT_CAP], row.raw[:RAW_CAP], row.report))
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
    conn.executemany("INSERT OR REPLACE INTO reports (id, ts, source, job, verb, accepted, "
                     "reason, raw, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", reports)
    conn.execute("COMMIT")


def used_bytes(conn: sqlite3.Connection) -> int:
    """What the rows take: the pages in use (free pages are reused before the file grows)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])


def trim_to_size(conn: sqlite3.Connection, cap: int, rounds: int = 30) -> None:
    """`history.keep_bytes`: delete the oldest tenth of the largest table until the rows fit in
    90% of `cap` (a margin, so the next batches do not trim again at once)."""
    for _ in range(rounds):
        if used_bytes(conn) <= cap * 0.9:
            return
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("events", "runs", "reports")}
        table = max(counts, key=lambda t: counts[t])
        if not counts[table]:
            return
        conn.execute(f"DELETE FROM {table} WHERE id <= (SELECT id FROM {table} ORDER BY id "
                     "LIMIT 1 OFFSET ?)", (max(counts[table] // 10, 1) - 1,))


# --- the read side ------------------------------------------------------------------------------


def stats(path: str) -> dict[str, Any]:
    """`zelador history --stats`: the files' sizes, the bytes the rows take, rows and time span
    per table."""
    files = {suffix or "db": os.path.getsize(path + suffix) for suffix in ("", "-wal", "-shm")
             if os.path.exists(path + suffix)}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        tables = {}
        for table, column in (("events", "ts"), ("runs", "COALESCE(ended, started)"),
                              ("reports", "ts")):
            count, oldest, newest = conn.execute(
                f"SELECT count(*), min({column}), max({column}) FROM {table}").fetchone()
            tables[table] = {"rows": count, "oldest": oldest, "newest": newest}
        used = used_bytes(conn)
    finally:
        conn.close()
    return {"path": path, "file_bytes": files, "total_bytes": sum(files.values()),
            "used_bytes": used, "tables": tables}


def backup(path: str, target: str) -> int:
    """A consistent copy of the history in `target` (mode 0600) with SQLite's online backup
    API: safe while zelador writes (WAL), the copy holds every committed row. Its bytes."""
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()
    finally:
        source.close()
    return os.path.getsize(target)


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


def read_reports_after(path: str, after: int,
                       limit: int = 1_000_000) -> list[tuple[int, float, str, str]]:
    """Accepted reports with an id above `after`, oldest first: (id, ts, job, report JSON)."""
    if not os.path.exists(path):
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        return [(int(i), float(ts), str(job), str(report)) for i, ts, job, report in conn.execute(
            "SELECT id, ts, job, report FROM reports WHERE id > ? AND accepted = 1 AND report "
            "IS NOT NULL ORDER BY id LIMIT ?", (after, limit))]
    finally:
        conn.close()


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
