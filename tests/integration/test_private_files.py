"""zelador's own files and folders (issue 20): private modes, folders a local user could change
refused with one line (supervision goes on), and no symlink in them ever followed.

A real unprivileged user is made for these tests (useradd) and removed after; it owns the
folders and link targets a local attacker would."""

from __future__ import annotations

import os
import pwd
import sqlite3
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from zelador.store import files, state

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (useradd, chown)")


@pytest.fixture(scope="module")
def local_user() -> Iterator[pwd.struct_passwd]:
    name = f"zt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owned_by(path: Path, user: pwd.struct_passwd) -> Path:
    os.lchown(path, user.pw_uid, user.pw_gid)
    return path


# --- the folders -----------------------------------------------------------------------------


def test_a_missing_folder_is_made_0700_and_a_safe_one_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "state"
    files.prepare_dir(str(folder), 0o700)
    assert mode(folder) == 0o700
    files.prepare_dir(str(folder), 0o700)  # again: nothing to say


def test_a_user_owned_or_world_writable_folder_is_refused(tmp_path: Path,
                                                          local_user: pwd.struct_passwd) -> None:
    theirs = tmp_path / "state"
    theirs.mkdir()
    owned_by(theirs, local_user)
    with pytest.raises(files.UnsafeFolder) as refused:
        files.prepare_dir(str(theirs))
    assert str(refused.value) == (f"folder {theirs} is owned by uid {local_user.pw_uid}, not "
                                  f"root (fix: chown root:root {theirs})")
    open_run = tmp_path / "run"
    open_run.mkdir()
    open_run.chmod(0o777)
    with pytest.raises(files.UnsafeFolder, match=r"writable by others \(fix: chmod o-w"):
        files.prepare_dir(str(open_run))
    below = open_run / "zelador"  # a folder of ours under one a user can change
    with pytest.raises(files.UnsafeFolder, match="writable by others"):
        files.prepare_dir(str(below))
    assert not below.exists()


def test_a_symlinked_folder_is_judged_by_its_target_too(tmp_path: Path,
                                                        local_user: pwd.struct_passwd) -> None:
    real = tmp_path / "theirs"
    real.mkdir()
    owned_by(real, local_user)
    (tmp_path / "state").symlink_to(real)
    with pytest.raises(files.UnsafeFolder, match="not root"):
        files.prepare_dir(str(tmp_path / "state"))


# --- the files -------------------------------------------------------------------------------


def test_links_in_our_folder_are_never_followed(tmp_path: Path,
                                                local_user: pwd.struct_passwd) -> None:
    folder = tmp_path / "state"
    files.prepare_dir(str(folder))
    victim = tmp_path / "victim"
    victim.write_text("theirs\n")
    owned_by(victim, local_user)
    victim.chmod(0o644)
    absent = tmp_path / "created-by-root"
    for name in ("history.db", "alerts.db", "zelador.lock"):
        (folder / name).symlink_to(victim if name != "zelador.lock" else absent)
    with pytest.raises(files.UnsafeFolder, match="is a symbolic link"):
        files.connect_private_sqlite(str(folder / "history.db"), timeout=1.0)
    with pytest.raises(files.UnsafeFolder, match="is a symbolic link"):
        files.open_private(str(folder / "zelador.lock"), os.O_RDWR | os.O_CREAT)
    # the old predictable temporary name, and the state file itself, as links
    (folder / f"state.json.{os.getpid()}.tmp").symlink_to(victim)
    (folder / "state.json").symlink_to(victim)
    with pytest.raises(state.StateFileError, match="symbolic link"):
        state.load(str(folder / "state.json"))
    state.save(str(folder / "state.json"), {"version": 1, "programs": {}})
    assert not (folder / "state.json").is_symlink() and mode(folder / "state.json") == 0o600
    assert victim.read_text() == "theirs\n" and mode(victim) == 0o644
    assert os.stat(victim).st_uid == local_user.pw_uid
    assert not absent.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["alerts.db", "history.db", "zelador.lock", f"state.json.{os.getpid()}.tmp",
         "state.json"])  # no temporary left behind


def test_a_wrong_mode_is_fixed_once_and_side_files_follow_the_database(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    wal = tmp_path / "history.db-wal"
    wal.write_bytes(b"")
    wal.chmod(0o644)
    said: list[str] = []
    old = os.umask(0o022)  # as an old unit without UMask= had it
    try:
        conn = files.connect_private_sqlite(str(path), timeout=1.0, note=said.append)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES ('secret')")
        assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
            "history.db": 0o600, "history.db-wal": 0o600, "history.db-shm": 0o600}
        conn.close()
        files.connect_private_sqlite(str(path), timeout=1.0, note=said.append).close()
    finally:
        os.umask(old)
    assert said == [f"{path} had mode 0644; set to 0600", f"{wal} had mode 0644; set to 0600"]


# --- the daemon ------------------------------------------------------------------------------


def test_daemon_files_are_private(mfe, zelador_factory) -> None:
    z = zelador_factory(mfe.config(monitor=False) + """alerts:
  channels:
    hook: {webhook: {url: "http://127.0.0.1:9/"}}
""")
    z.start()
    z.wait_event("started", "comunicador")
    folder = z.tmp / "state"
    wait_for(lambda: (folder / "state.json").exists(), what="state.json")
    wait_for(lambda: (folder / "history.db-wal").exists(), what="the history's WAL")
    modes = {p.name: mode(p) for p in folder.iterdir() if p.is_file()}
    for name in ("state.json", "history.db", "history.db-wal", "history.db-shm", "alerts.db",
                 "alerts.db-wal", "alerts.db-shm"):
        assert modes.get(name) == 0o600, (name, modes)
    assert mode(folder) == 0o700 and mode(z.tmp / "run") == 0o700
    assert mode(z.tmp / "run" / "zelador.lock") == 0o600


def test_a_user_owned_state_folder_is_refused_and_supervision_goes_on(
        mfe, zelador_factory, local_user: pwd.struct_passwd) -> None:
    z = zelador_factory(mfe.config(monitor=False))
    folder = z.tmp / "state"
    folder.mkdir()
    owned_by(folder, local_user)
    z.start()
    z.wait_event("started", "comunicador")
    refused = [e for e in z.matching("degraded") if "state folder" in e["message"]]
    assert len(refused) == 1, z.log.read_text()
    assert refused[0]["message"] == (
        f"not using state folder {folder} (no history, no alerts, nothing kept across a "
        f"restart): folder {folder} is owned by uid {local_user.pw_uid}, not root "
        f"(fix: chown root:root {folder})")
    assert list(folder.iterdir()) == []
    assert z.program("comunicador")["state"] == "RUNNING"


def test_a_world_writable_runtime_folder_is_refused_and_still_locks(mfe, zelador_factory) -> None:
    z = zelador_factory(mfe.config(monitor=False))
    run = z.tmp / "run"
    run.mkdir()
    run.chmod(0o777)
    z.start()
    z.wait_event("started", "comunicador")
    refused = [e for e in z.matching("degraded") if "runtime folder" in e["message"]]
    assert len(refused) == 1 and "writable by others (fix: chmod o-w" in refused[0]["message"]
    assert list(run.iterdir()) == []  # no lock file, no socket there
    second = subprocess.run(z.argv(), capture_output=True, text=True, timeout=60)
    assert second.returncode == 69  # the same folders: the abstract lock keeps it out
    assert "another zelador already runs" in second.stderr


def test_programs_get_umask_022_back_under_zeladors_0077(mfe, zelador_factory) -> None:
    z = zelador_factory(mfe.config(monitor=False))
    old = os.umask(0o077)  # as the unit's UMask=0077 gives zelador
    try:
        z.start()
    finally:
        os.umask(old)
    pid = int(z.wait_event("started", "comunicador")["pid"])
    own = Path(f"/proc/{z.proc.pid}/status").read_text()
    theirs = Path(f"/proc/{pid}/status").read_text()
    assert "Umask:\t0077" in own and "Umask:\t0022" in theirs


def test_links_planted_in_the_daemons_folders_change_nothing(
        mfe, zelador_factory, local_user: pwd.struct_passwd) -> None:
    z = zelador_factory(mfe.config(monitor=False))
    run, folder = z.tmp / "run", z.tmp / "state"
    for made in (run, folder):
        made.mkdir(mode=0o700)
    victim = z.tmp / "victim"
    victim.write_text("theirs\n")
    owned_by(victim, local_user)
    absent = z.tmp / "made-by-root"
    (run / "zelador.lock").symlink_to(absent)
    (folder / "history.db").symlink_to(victim)
    (folder / "state.json").symlink_to(victim)
    z.start()
    z.wait_event("started", "comunicador")
    lines = [e["message"] for e in z.matching("degraded") + z.matching("state_ignored")]
    assert any(f"not using runtime folder {run}" in m and "zelador.lock is a symbolic link" in m
               for m in lines), lines
    assert any("history" in m and "history.db is a symbolic link" in m for m in lines), lines
    assert any("state.json is a symbolic link" in m for m in lines), lines
    z.stop()
    assert not absent.exists() and victim.read_text() == "theirs\n"
    assert os.stat(victim).st_uid == local_user.pw_uid and mode(victim) == 0o644
    assert (run / "zelador.lock").is_symlink() and (folder / "history.db").is_symlink()


def test_the_spool_writes_through_a_private_temporary_not_a_planted_link(
        tmp_path: Path, local_user: pwd.struct_passwd, monkeypatch) -> None:
    from zelador.jobs import wrapper

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("theirs\n")
    owned_by(victim, local_user)
    monkeypatch.setattr(wrapper.time, "time", lambda: 1000.0)
    (spool / "1000.000000-7.json.tmp").symlink_to(victim)  # the old, predictable name
    path = Path(wrapper.write_spool(str(spool), "7", [{"cmd": "report"}]))
    assert path.name == "1000.000000-7.json" and mode(path) == 0o600
    assert victim.read_text() == "theirs\n"


def test_a_world_writable_logs_folder_is_not_used_for_script_output(mfe, zelador_factory) -> None:
    z = zelador_factory(mfe.config(monitor=False))
    logs = z.tmp / "logs"
    logs.mkdir()
    logs.chmod(0o777)
    z.start()
    z.wait_event("started", "comunicador")
    refused = [e["message"] for e in z.matching("degraded") if "script output" in e["message"]]
    assert refused == [f"script output goes to zelador's stderr, not {logs}/comunicador.log: "
                       f"folder {logs} is writable by others (fix: chmod o-w {logs})"]
    assert list(logs.iterdir()) == []
