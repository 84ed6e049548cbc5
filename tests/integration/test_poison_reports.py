"""The poison-input corpus for report lines (tests/corpus/reports/), replayed against a running
daemon: after each line zelador is still up, answers a good report OK and `status` over the
control socket; the history still takes rows."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.integration.test_jobs import history, jobs_config, send_lines
from zelador.runtime.control import ask

CORPUS = Path(__file__).parents[1] / "corpus" / "reports" / "lines.bin"


def _probe(z, port: int, n: int) -> None:
    assert z.proc.poll() is None, z.log.read_text()[-3000:]
    assert send_lines(port, b"name=probe;state=OK;run=p%d\n" % n) == ["OK"]
    assert ask(z.socket, {"cmd": "status"})["pid"] == z.proc.pid


def test_every_poison_line_leaves_zelador_up_and_answering(zelador_factory) -> None:
    port = free_port()
    z = zelador_factory(jobs_config(port, "  backup: {id: 25, every: 1d}\n"
                                          "  probe: {every: 1d}")).start()
    lines = CORPUS.read_bytes().split(b"\n")[:-1]
    assert len(lines) > 40
    worker = ask(z.socket, {"cmd": "jobs"})["intake"]["worker"]
    for n, line in enumerate(lines):
        replies = send_lines(port, line + b"\n")
        assert len(replies) <= 1 and (not replies or replies[0] == "OK"
                                      or replies[0].startswith("ERR ")), (line, replies)
        _probe(z, port, n)
    # longer cases made here: 5 MB without a newline, and the same line in every framing
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn, \
            contextlib.suppress(OSError):  # closed on us after the first 4 kB: the point
        conn.sendall(b"x" * (5 << 20))
    _probe(z, port, 1000)
    for line in lines[:10]:
        replies = send_lines(port, line)  # no newline: the end of the connection ends it
        assert len(replies) <= 1, (line, replies)
        replies = send_lines(port, line + b"\r\n" + line + b"\n")
        assert len(replies) <= 2, (line, replies)
    _probe(z, port, 2000)
    # what a client sends never costs the worker either (nothing it passes on is "garbage")
    assert ask(z.socket, {"cmd": "jobs"})["intake"]["worker"] == worker
    assert not [e for e in z.matching("degraded") if "worker" in e["message"]]
    wait_for(lambda: history(z, "SELECT COUNT(*) FROM runs WHERE job = 'probe'")[0][0]
             == len(lines) + 2, what="the history still written")
