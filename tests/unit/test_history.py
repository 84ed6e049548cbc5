"""The history store on real SQLite in tmp_path: rows, filters, retention, a damaged file, and a
full queue that drops (and counts) instead of blocking."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from zelador.events import event
from zelador.jobs.engine import JobPhase, RunRow
from zelador.store import history
from zelador.store.history import HistoryWriter, ReportRow, read_events, read_runs, write_rows


def wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_events_runs_and_reports_are_written_and_read_back(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    problems: list[str] = []
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=problems.append)
    writer.emit(event("exited", "comunicador exited", subject="comunicador", pid=12))
    writer.emit(event("job_failed", "job x FAILED", subject="x", subject_kind="job", exit_status=2))
    writer.record_run(RunRow("x", "r1", JobPhase.RUNNING, 100.0))
    writer.record_run(RunRow("x", "r1", JobPhase.FAIL, None, 160.0, 2, 60.0, "boom", "out\n"))
    writer.record_report(ReportRow(150.0, "tcp 127.0.0.1", None, None, False, "bad", "garbage"))
    writer.close()
    assert not problems
    rows = read_events(path)
    assert [r["kind"] for r in rows] == ["exited", "job_failed"]
    assert rows[0]["fields"] == {"pid": "12"} and rows[1]["subject_kind"] == "job"
    assert [r["kind"] for r in read_events(path, name="x")] == ["job_failed"]
    assert [r["kind"] for r in read_events(path, kinds=["exited"])] == ["exited"]
    runs = read_runs(path, "x")
    assert len(runs) == 1 and runs[0]["state"] == "FAIL" and runs[0]["started"] == 100.0
    assert runs[0]["duration"] == 60.0 and runs[0]["output"] == "out\n"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT raw, accepted FROM reports").fetchall() == [("garbage", 0)]


def test_retention_by_age_and_by_rows(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    now = [1_000_000.0]
    writer = HistoryWriter(path, keep=3600.0, max_rows=1000, on_problem=print,
                           clock=lambda: now[0])
    conn = sqlite3.connect(path, isolation_level=None)
    write_rows(conn, [(now[0] - 7200, event("exited", "old"))])
    write_rows(conn, [(now[0] - 1500 + i, event("exited", f"new {i}")) for i in range(1500)])
    writer.prune()
    rows = read_events(path, limit=5000)
    assert len(rows) == 1000 and all(r["message"] != "old" for r in rows)
    assert rows[-1]["message"] == "new 1499"  # the newest rows (by id) stay
    writer.close()


def test_a_damaged_file_is_moved_aside_and_a_new_one_started(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)
    said: list[str] = []
    writer = HistoryWriter(str(path), keep=86400.0, max_rows=1000, on_problem=said.append)
    writer.emit(event("started", "ok"))
    writer.close()
    assert said and "damaged" in said[0]
    assert list(tmp_path.glob("history.db.corrupt-*"))
    assert [r["message"] for r in read_events(str(path))] == ["ok"]


def test_a_full_queue_drops_and_counts_and_never_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(history, "QUEUE_SIZE", 10)
    path = str(tmp_path / "history.db")
    said: list[str] = []
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=said.append)
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    lock.execute("BEGIN EXCLUSIVE")  # the disk "hangs": the writer cannot write
    try:
        began = time.monotonic()
        for i in range(1000):
            writer.emit(event("exited", f"{i}"))
        assert time.monotonic() - began < 1.0  # never waited on the disk
        wait(lambda: writer.dropped > 900)
        assert any("queue full" in s for s in said)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    writer.close()


def test_a_failed_write_loses_the_batch_and_goes_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(history, "BATCH_WAIT", 0.0)
    path = str(tmp_path / "history.db")
    said: list[str] = []
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=said.append)
    writer._conn.execute("PRAGMA busy_timeout = 0")
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        writer.emit(event("exited", "lost"))
        wait(lambda: writer.dropped == 1)
        assert "cannot write history" in said[0]
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    writer.emit(event("exited", "kept"))
    writer.close()
    assert [r["message"] for r in read_events(path)] == ["kept"]
    assert threading.active_count() >= 1
