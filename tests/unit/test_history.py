"""The history store on real SQLite in tmp_path: rows, filters, retention, a damaged file, and a
full queue that drops events (and counts) instead of blocking, failed writes kept and tried
again (a lock, a full disk on a small tmpfs), rows SQLite cannot hold refused alone, a writer
thread no exception ends."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from zelador.events import event
from zelador.jobs.engine import JobPhase, RunRow
from zelador.store import history, historywriter
from zelador.store.history import ReportRow, read_events, read_runs, write_rows
from zelador.store.historywriter import HistoryWriter


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
    monkeypatch.setattr(historywriter, "QUEUE_SIZE", 10)
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


def test_a_failed_write_is_kept_and_written_when_it_can(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(historywriter, "BATCH_WAIT", 0.0)
    monkeypatch.setattr(historywriter, "RETRY_MOST", 0.2)
    path = str(tmp_path / "history.db")
    said: list[str] = []
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=said.append)
    assert writer._conn is not None
    writer._conn.execute("PRAGMA busy_timeout = 0")
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        writer.emit(event("exited", "first"))
        wait(lambda: writer.trouble is not None)
        time.sleep(0.5)  # (several attempts fail meanwhile: said once)
        assert len([s for s in said if "cannot write history" in s]) == 1
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    writer.emit(event("exited", "second"))
    wait(lambda: writer.trouble is None)
    writer.close()
    assert [r["message"] for r in read_events(path)] == ["first", "second"]
    assert any("written again" in s for s in said) and writer.dropped == 0


def test_a_row_sqlite_cannot_hold_is_refused_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    said: list[str] = []
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=said.append)
    writer.emit(event("exited", "before"))
    writer.record_run(RunRow("x", "r1", JobPhase.FAIL, None, 1.0, 10**20))  # OverflowError
    writer.emit(event("exited", "after"))
    done = threading.Event()
    writer.barrier(done.set)
    assert done.wait(10)
    assert writer.alive() and writer.rejected == 1
    assert any("OverflowError" in s and "run r1 of job x" in s for s in said)
    writer.emit(event("exited", "later"))
    writer.close()
    assert [r["message"] for r in read_events(path)] == ["before", "after", "later"]


def test_the_writer_survives_any_exception_and_can_be_restarted(tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(historywriter, "RETRY_MOST", 0.1)
    path = str(tmp_path / "history.db")
    said: list[str] = []
    calls = [0]
    real = historywriter.write_rows

    def flaky(conn, batch):
        calls[0] += 1
        if calls[0] <= 2:
            raise RuntimeError("a bug")
        real(conn, batch)

    monkeypatch.setattr(historywriter, "write_rows", flaky)
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=said.append)
    done = threading.Event()
    writer.emit(event("exited", "kept"))
    writer.barrier(done.set)
    assert done.wait(10) and writer.alive()
    assert any("RuntimeError: a bug" in s for s in said)
    writer.restart()  # alive: nothing happens
    writer.close()
    assert not writer.alive()
    assert [r["message"] for r in read_events(path)] == ["kept"]


def test_report_ids_go_on_above_a_saved_state_and_accepted_reports_read_back(
        tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=print)
    writer.reserve(41)
    first = writer.record_report(ReportRow(1.0, "tcp", "x", "ok", True, report='["ok"]'))
    second = writer.record_report(ReportRow(2.0, "tcp", "x", "ok", False, "too many open runs"))
    writer.close()
    assert (first, second) == (42, 43)
    assert history.read_reports_after(path, 0) == [(42, 1.0, "x", '["ok"]')]
    assert history.read_reports_after(path, 42) == []
    again = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=print)
    assert again.next_report == 44
    again.close()


def test_an_old_file_gets_the_new_column(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    conn = sqlite3.connect(path)
    conn.executescript(history.SCHEMA)
    conn.close()
    writer = HistoryWriter(path, keep=86400.0, max_rows=1000, on_problem=print)
    writer.record_report(ReportRow(1.0, "tcp", "x", "ok", True, report="[]"))
    writer.close()
    assert history.read_reports_after(path, 0)[0][3] == "[]"


def test_disk_full_is_named_kept_and_written_when_space_returns(tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(historywriter, "RETRY_MOST", 0.2)
    small = tmp_path / "small"
    small.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(small)],
                          capture_output=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        path = str(small / "history.db")
        said: list[str] = []
        writer = HistoryWriter(path, keep=86400.0, max_rows=10**6, on_problem=said.append)
        filler = small / "fill"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        committed = threading.Event()
        for i in range(300):
            writer.emit(event("exited", f"row {i} " + "x" * 500))
        writer.barrier(committed.set)
        wait(lambda: writer.trouble is not None and "disk full" in writer.trouble)
        assert not committed.is_set()
        assert sum("disk full" in s for s in said) == 1
        filler.unlink()
        assert committed.wait(20)
        writer.close()
        assert len(read_events(path, limit=None)) == 300
        assert any("written again" in s for s in said) and writer.dropped == 0
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
