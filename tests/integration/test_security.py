"""No local user can steer the root daemon (issue 20): what zelador runs or reads is judged on
the path as written, each folder, symlink and link target, and used from what was checked.

Each test creates a real unprivileged user (removed after) who does what a local user could:
owns a folder on a configured path and flips a symlink there as fast as they can."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import wait_for
from zelador.config.host import check_root_only, open_checked, read_checked
from zelador.config.model import Match, Program
from zelador.config.reader import load_config
from zelador.errors import ConfigError, LaunchError, UnsafeFileError
from zelador.programs.launcher import Launcher

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                                reason="the checks are for a root daemon; needs useradd")

LAUNCHES = 30


@dataclass
class Local:
    """An unprivileged user and a root-owned playground they can reach."""

    name: str
    uid: int
    gid: int
    base: Path  # root:root 0755, in /var/tmp (the user can reach it; pytest's tmp is 0700)

    def folder(self, name: str) -> Path:
        """A folder of the user's own inside the playground."""
        path = self.base / name
        path.mkdir(mode=0o755)
        os.chown(path, self.uid, self.gid)
        return path

    def file(self, path: Path, text: str, mode: int = 0o755) -> Path:
        path.write_text(text)
        path.chmod(mode)
        os.chown(path, self.uid, self.gid)
        return path

    def flipper(self, link: Path, *targets: Path) -> subprocess.Popen[bytes]:
        """The user, flipping `link` between `targets` as fast as they can (atomic renames)."""
        code = ("import os,sys,itertools\n"
                "link=sys.argv[1]\n"
                "for i in itertools.count():\n"
                "    t=sys.argv[2+i%(len(sys.argv)-2)]; tmp=link+'.new'\n"
                "    try: os.unlink(tmp)\n"
                "    except OSError: pass\n"
                "    os.symlink(t,tmp); os.replace(tmp,link)\n")
        return subprocess.Popen([sys.executable, "-c", code, str(link), *map(str, targets)],
                                user=self.uid, group=self.gid, extra_groups=[],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def local() -> Iterator[Local]:
    name = f"zt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    base = Path(tempfile.mkdtemp(prefix="zelador-sec-", dir="/var/tmp"))
    try:
        base.chmod(0o755)
        import pwd

        entry = pwd.getpwnam(name)
        yield Local(name, entry.pw_uid, entry.pw_gid, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["userdel", name], capture_output=True)
        subprocess.run(["groupdel", name], capture_output=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


def good_and_evil(local: Local) -> tuple[Path, Path, Path, Path]:
    """A root script, the user's script (which leaves a marker only root could write), the
    marker, and the user's folder."""
    good = local.base / "good.sh"
    good.write_text("#!/bin/sh\nexit 0\n")
    good.chmod(0o755)
    marker = local.base / "pwned"  # in the root-owned playground: only root can create it
    mine = local.folder("mine")
    evil = local.file(mine / "evil.sh", f"#!/bin/sh\ntouch {marker}\n")
    return good, evil, marker, mine


def test_a_link_flipped_in_a_users_folder_never_runs_the_users_script(local: Local) -> None:
    good, evil, marker, mine = good_and_evil(local)
    link = mine / "run.sh"
    os.symlink(good, link)
    os.lchown(link, local.uid, local.gid)
    flipper = local.flipper(link, good, evil)
    launcher = Launcher()
    try:
        program = Program(name="flip", match=Match(name="zt-never"), start=(str(link),))
        for _ in range(LAUNCHES):
            with pytest.raises(LaunchError) as refused:
                child = launcher.start(program)
                child.popen.wait(10)  # (it never gets here; if it did, the marker would tell)
            assert refused.value.host
            assert f"the folder '{mine}' on its path is owned by uid {local.uid}" in \
                str(refused.value)
            assert f"fix: chown root:root {mine} && chmod go-w {mine}" in str(refused.value)
    finally:
        stop(flipper)
    assert not marker.exists(), "the user's script ran as root"


def test_a_link_in_a_root_folder_to_a_users_folder_is_refused(local: Local) -> None:
    _, evil, marker, mine = good_and_evil(local)
    os.symlink(evil, mine / "target.sh")
    link = local.base / "run.sh"  # a root-owned link in a root-owned folder...
    os.symlink(mine / "target.sh", link)  # ...to a link in the user's folder
    with pytest.raises(UnsafeFileError, match=f"the folder '{mine}' on its path"):
        check_root_only(str(link), "start script")
    relative = local.base / "rel.sh"
    os.symlink("mine/../good.sh", relative)  # `..` out of the user's folder: still through it
    with pytest.raises(UnsafeFileError, match=f"'{mine}'"):
        check_root_only(str(relative), "start script")
    assert not marker.exists()


def test_a_root_only_path_with_links_runs_every_time(local: Local, tmp_path: Path) -> None:
    """The check refuses only what a user could change: root's own links work (and are
    followed, relative and absolute, to the end)."""
    ran = tmp_path / "ran"
    real = local.base / "real"
    real.mkdir()
    script = real / "start.sh"
    script.write_text(f"#!/bin/sh\necho \"$0\" >> {ran}\n")
    script.chmod(0o755)
    os.symlink("real", local.base / "current")
    os.symlink(str(local.base / "current") + "/./start.sh", local.base / "start")
    launcher = Launcher()
    program = Program(name="ok", match=Match(name="zt-never"),
                      start=(str(local.base / "start"),))
    for _ in range(5):
        child = launcher.start(program)
        assert child.popen.wait(10) == 0
    assert ran.read_text().splitlines() == [str(local.base / "start")] * 5  # $0 as configured


def test_a_shebang_interpreter_a_user_can_change_is_refused(local: Local) -> None:
    mine = local.folder("mine")
    interpreter = local.file(mine / "sh", "#!/bin/sh\nexec /bin/sh \"$@\"\n")
    script = local.base / "start.sh"
    script.write_text(f"#!{interpreter}\nexit 0\n")
    script.chmod(0o755)
    with pytest.raises(UnsafeFileError, match=f"interpreter of start script '{script}'"):
        check_root_only(str(script), "start script")


def test_the_daemon_holds_the_program_fatal_naming_the_folder(local: Local, zelador_factory):
    good, evil, marker, mine = good_and_evil(local)
    link = mine / "run.sh"
    os.symlink(good, link)
    flipper = local.flipper(link, good, evil)
    try:
        z = zelador_factory(f"programs:\n  flip:\n    match: {{name: zt-never}}\n"
                            f"    start: {link}\n").start()
        problem = z.wait_event("host_problem", "flip", timeout=20)
        assert f"the folder '{mine}' on its path is owned by uid {local.uid}" in \
            problem["message"]
        assert f"chown root:root {mine}" in problem["message"]
        assert z.program("flip")["state"] == "FATAL"
        z.stop()
    finally:
        stop(flipper)
    assert not marker.exists()


def test_a_config_through_a_users_folder_is_refused(local: Local,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mine = local.folder("etc")
    config = mine / "zelador.yaml"
    config.write_text("programs: {}\n")  # root's own file, in the user's folder
    with pytest.raises(ConfigError) as refused:
        load_config(str(config))
    assert f"the folder '{mine}' on its path is owned by uid {local.uid}" in str(refused.value)
    with pytest.raises(UnsafeFileError):  # what the drop-ins are read with
        read_checked(str(config), "drop-in")
    monkeypatch.chdir(mine)  # `zelador validate -c zelador.yaml` from there: the way there counts
    with pytest.raises(UnsafeFileError, match=f"'{mine}'"):
        read_checked("zelador.yaml", "config file")
    own = local.base / "zelador.yaml"
    own.write_text("programs: {}\n")
    assert read_checked(str(own), "drop-in") == b"programs: {}\n"
    own.chmod(0o664)
    os.chown(own, 0, local.gid)  # group-writable by the user's group
    with pytest.raises(UnsafeFileError, match=f"is writable by group gid {local.gid}"):
        read_checked(str(own), "config file")


def test_a_secret_is_read_from_the_checked_file_at_every_read(local: Local) -> None:
    from zelador.alerts.channels.common import read_secret

    secret = local.base / "token"
    secret.write_text("123:RIGHT\n")
    secret.chmod(0o600)
    assert read_secret(str(secret)) == "123:RIGHT"
    secret.chmod(0o644)
    with pytest.raises(OSError, match="is readable by others"):
        read_secret(str(secret))
    mine = local.folder("mine")
    local.file(mine / "token", "666:EVIL\n", 0o600)
    os.symlink(mine / "token", local.base / "token2")
    with pytest.raises(OSError, match=f"'{mine}'"):
        read_secret(str(local.base / "token2"))


def test_an_auth_file_swap_never_logs_the_user_in(local: Local) -> None:
    """The user repoints the auth file's link at their own `eve:eve` as fast as they can,
    while requests keep coming: none of them gets in, not even root's own user."""
    from zelador.config.model import Web
    from zelador.web.server import Snapshots, WebServer

    rights = local.base / "users"
    rights.write_text("admin:right\n")
    rights.chmod(0o600)
    mine = local.folder("mine")
    evil = local.file(mine / "users", "eve:eve\n", 0o600)
    link = mine / "auth"
    os.symlink(rights, link)

    class NoLoop:  # the loop's side of a snapshot, on a thread of its own
        def post(self, work):  # type: ignore[no-untyped-def]
            threading.Thread(target=work).start()

    server = WebServer(Web(host="127.0.0.1", port=0, auth_file=str(link)),
                       Snapshots(NoLoop(), lambda: {}), None)  # type: ignore[arg-type]
    server.start()
    flipper = local.flipper(link, rights, evil)
    try:
        for i in range(LAUNCHES * 2):
            who = b"eve:eve" if i % 2 else b"admin:right"
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/api/status", headers={
                "Authorization": "Basic " + base64.b64encode(who).decode()})
            assert conn.getresponse().status == 401
            conn.close()
    finally:
        stop(flipper)
        server.close()
    # and a root-only file that turns readable is refused at the next request
    server = WebServer(Web(host="127.0.0.1", port=0, auth_file=str(rights)),
                       Snapshots(NoLoop(), lambda: {}), None)  # type: ignore[arg-type]
    server.start()
    try:
        def ask() -> int:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            conn.request("GET", "/api/status", headers={
                "Authorization": "Basic " + base64.b64encode(b"admin:right").decode()})
            with contextlib.closing(conn):
                return conn.getresponse().status
        assert ask() == 200
        rights.chmod(0o644)
        assert ask() == 401
    finally:
        server.close()


def test_the_walk_ends_on_loops_and_names_what_is_missing(local: Local) -> None:
    os.symlink("b", local.base / "a")
    os.symlink("a", local.base / "b")
    with pytest.raises(UnsafeFileError, match="more than 40 symlinks"):
        check_root_only(str(local.base / "a"), "start script")
    with pytest.raises(FileNotFoundError) as missing:
        open_checked(str(local.base / "nope" / "x"), "start script")
    assert missing.value.filename == str(local.base / "nope")
    wait_for(lambda: True)
