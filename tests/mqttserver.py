"""A throwaway mosquitto (Debian's package) for the MQTT fleet tests and bench: loopback only,
its own config, password file and ACL (each terminal writes only its own topics)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, stop_group

MOSQUITTO = Path("/usr/sbin/mosquitto")
PASSWD = Path("/usr/bin/mosquitto_passwd")

ACL = """# readers (zelador fleet): every terminal's topics, and their own marker topic
user desk
topic read zelador/hosts/#
topic readwrite zelador/readers/#

# every terminal writes (and reads) only its own topics: zelador/hosts/<its user name>/...
pattern readwrite zelador/hosts/%u/#
"""


class Mosquitto:
    def __init__(self, folder: Path, users: dict[str, str] | None = None,
                 *, max_connections: int = -1, stock: bool = False) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.users = users or {}
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "user root",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if not stock:  # stock: mosquitto's defaults (max_queued_messages 1000 ...)
            lines += [f"max_connections {max_connections}", "max_queued_messages 100000"]
        if self.users:
            passwd = folder / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run([str(PASSWD), "-b", str(passwd), user, password], check=True,
                               capture_output=True)
            os.chmod(passwd, 0o600)
            (folder / "acl").write_text(ACL)
            lines += ["allow_anonymous false", f"password_file {passwd}",
                      f"acl_file {folder / 'acl'}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Mosquitto:
        with open(self.folder / "mosquitto.log", "ab") as out:
            self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.config)], stdout=out,
                                         stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        stop_group(self.proc, 10)
        self.proc = None
