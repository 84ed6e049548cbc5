"""A throwaway ZooKeeper (Debian's zookeeper package) for the fleet tests and bench."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, stop_group

ZK = Path("/usr/share/zookeeper/bin/zkServer.sh")



class ZooKeeper:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.hosts = f"127.0.0.1:{self.port}"
        (folder / "data").mkdir(parents=True, exist_ok=True)
        self.config = folder / "zoo.cfg"
        self.config.write_text(f"tickTime=2000\ndataDir={folder / 'data'}\n"
                               f"clientPort={self.port}\nclientPortAddress=127.0.0.1\n"
                               "admin.enableServer=false\nmaxSessionTimeout=60000\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ZooKeeper:
        env = {**os.environ, "ZOO_LOG_DIR": str(self.folder), "ZOO_LOG4J_PROP": "WARN,ROLLINGFILE"}
        with open(self.folder / "zk.out", "ab") as out:
            self.proc = subprocess.Popen([str(ZK), "start-foreground", str(self.config)],
                                         stdout=out, stderr=out, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zookeeper exited: {(self.folder / 'zk.out').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"srvr")
                    if b"Mode" in conn.recv(1024):
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("zookeeper did not start")

    def stop(self) -> None:
        stop_group(self.proc, 15)
        self.proc = None
