"""Nothing answered OK is lost (issue 19): a real daemon, a client sending report after report,
and several kill -9s of zelador at random moments. Every report that got OK is in the history
afterwards and applied to its job (its run row, and the job's last run)."""

from __future__ import annotations

import os
import random
import socket
import threading
import time

import psutil

from tests.conftest import free_port, wait_for
from tests.integration.test_jobs import history, job, jobs_config
from zelador.runtime.control import ask


def _report(port: int, run: str) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"name=burst;state=ok;run=%s\n" % run.encode())
            return conn.makefile("rb").readline().decode().strip()
    except OSError:
        return None


def test_every_report_answered_ok_survives_kill_9_of_zelador(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, "  burst: {every: 1h}")).start()
    acknowledged: list[str] = []
    stop = threading.Event()

    def client() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            run = f"c{n}"
            if _report(port, run) == "OK":
                acknowledged.append(run)
            elif not stop.is_set():
                time.sleep(0.02)  # zelador is down: try again shortly

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    seed = int(os.environ.get("ZELADOR_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    try:
        for last in (False, False, False, False, True):
            before = len(acknowledged)
            wait_for(lambda before=before: len(acknowledged) >= before + 20, timeout=30,
                     what="reports flowing")
            if last:  # the last kill right after the last OK: the saved state (once a second)
                stop.set()  # has not got it yet, the history has
                thread.join(10)
            else:
                time.sleep(rng.uniform(0.0, 0.5))
            worker = ask(z.socket, {"cmd": "jobs"})["intake"]["worker"]
            assert z.proc is not None
            z.proc.kill()
            z.proc.wait(10)
            if worker:  # it leaves when zelador's end of its channel closes (and frees the port)
                wait_for(lambda pid=worker: not psutil.pid_exists(pid)
                         or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                         what="the old worker gone")
            z.start()
    finally:
        stop.set()
        thread.join(10)
    assert len(acknowledged) > 100, seed
    kept = {run for (run,) in history(z, "SELECT run_id FROM runs WHERE job = 'burst' AND "
                                         "state = 'OK'")}
    lost = [run for run in acknowledged if run not in kept]
    assert not lost, (seed, len(lost), lost[:10])
    reports = {raw.rsplit("=", 1)[1] for (raw,) in history(
        z, "SELECT raw FROM reports WHERE accepted = 1 AND job = 'burst'")}
    assert not [run for run in acknowledged if run not in reports], seed
    assert job(z, "burst")["last"]["run"] == acknowledged[-1], seed  # applied, not only kept
    assert z.matching("reports_replayed"), seed
