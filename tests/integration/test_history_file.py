"""The history file as a sysadmin handles it: its size in bytes (`zelador history --stats`), a
size cap (`history.keep_bytes`), and a backup taken while zelador writes (SQLite's online backup
API). Real SQLite files, a real writer thread, the real CLI."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import wait_for
from zelador.config.reader import parse_config
from zelador.errors import ConfigError
from zelador.events import Event
from zelador.store.history import read_events, used_bytes, write_rows
from zelador.store.historywriter import HistoryWriter

MB = 1024 * 1024


def history(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zelador", "history", *args, "--state-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)


def test_keep_bytes_trims_the_oldest_rows_until_the_rest_fits(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    now = [2_000_000.0]
    writer = HistoryWriter(path, keep=90 * 86400.0, max_rows=1_000_000, on_problem=print,
                           clock=lambda: now[0], keep_bytes=2 * MB)
    conn = sqlite3.connect(path, isolation_level=None)
    text = "x" * 2000
    write_rows(conn, [(now[0] - 5000 + i, Event("exited", f"{i} {text}", "comunicador"))
                      for i in range(5000)])  # ~10 MB of rows
    assert used_bytes(conn) > 8 * MB
    writer.prune()
    assert used_bytes(conn) <= 2 * MB
    rows = read_events(path, limit=None, fields=False)
    assert 0 < len(rows) < 5000 and rows[-1]["message"].startswith("4999 ")  # the newest stay
    size = os.path.getsize(path)
    write_rows(conn, [(now[0] + i, Event("exited", f"n{i} {text}", "comunicador"))
                      for i in range(300)])
    writer.prune()
    assert os.path.getsize(path) <= size + MB  # freed pages were reused: the file stays put
    writer.close()
    conn.close()


def test_keep_bytes_is_read_in_megabytes_and_refused_when_too_small() -> None:
    base = "programs: {a: {match: {name: A}, start: /bin/true}}\nhistory: {keep_bytes: %s}\n"
    assert parse_config(base % "50MB", check_files=False).history.keep_bytes == 50 * MB
    assert parse_config(base % "1G", check_files=False).history.keep_bytes == 1024 * MB
    with pytest.raises(ConfigError, match=r"<config>:2: history.keep_bytes: 'lots' is not a "
                                          r"size \(e.g. 50MB, 1G\)"):
        parse_config(base % "lots", check_files=False)
    with pytest.raises(ConfigError, match="too small"):
        parse_config(base % "10K", check_files=False)


def test_stats_and_a_backup_taken_while_the_writer_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "history.db")
    writer = HistoryWriter(path, keep=90 * 86400.0, max_rows=1_000_000, on_problem=print)
    stop = threading.Event()
    written = [0]

    def keep_writing() -> None:  # what the daemon's sinks do: events, all the time
        while not stop.is_set():
            writer.emit(Event("exited", f"event {written[0]} " + "y" * 500, "comunicador"))
            written[0] += 1
            if written[0] % 200 == 0:
                stop.wait(0.01)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        wait_for(lambda: len(read_events(path, limit=None, fields=False)) > 2000, 30, "rows")
        target = tmp_path / "copy.db"
        done = history(tmp_path, "--backup", str(target))
        assert done.returncode == 0, done.stderr
        assert f"{target}: " in done.stdout and "a consistent copy" in done.stdout
        again = history(tmp_path, "--backup", str(target))
        assert again.returncode == 64 and "exists" in again.stderr  # never overwrites
        stats = history(tmp_path, "--stats")
        assert stats.returncode == 0, stats.stderr
        assert " bytes on disk (db " in stats.stdout and "rows take" in stats.stdout
        assert "events" in stats.stdout
    finally:
        stop.set()
        thread.join()
        writer.close()
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    copy = sqlite3.connect(str(target))
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    copied = copy.execute("SELECT count(*) FROM events").fetchone()[0]
    copy.close()
    assert 2000 < copied <= written[0]
    assert not os.path.exists(f"{target}-wal")  # one self-contained file
