"""When a run counts as started, and when a program is back (issue 21): a health check decides
"started" when there is one; a slow retry that dies young is the same problem, not a recovery."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.integration.test_trees import kill_all_below, lay_out


def test_a_program_that_never_becomes_healthy_backs_off_like_a_failed_start(tmp_path: Path,
                                                                             zelador_factory):
    """It lives past `stable` but never opens its port: each death is a failed start (backoff
    1s, 2s ...), not a healthy program's occasional death restarted at once."""
    name = f"Nh{uuid.uuid4().hex[:6]}"
    laid = lay_out(tmp_path / "nh", name, f"nohup ./{name} -c 'sleep 2; exit 1' >/dev/null 2>&1 &")
    port = free_port()
    try:
        z = zelador_factory(laid.config(
            f"    restart: {{stable: 1s}}\n    health: {{tcp: '127.0.0.1:{port}', every: 1s, "
            "start_after: 0s}\n")).start()
        first = z.wait_event("exited", "tree", timeout=15)
        assert "before its health check ever passed" in first["message"]
        assert "restarting in 1s" in z.wait_event("backoff", "tree")["message"]
        z.wait_event("exited", "tree", count=2, timeout=15)
        assert "restarting in 2s" in z.wait_event("backoff", "tree", count=2)["message"]
        assert not z.matching("stable", "tree")
    finally:
        z.stop()  # first: it would start again what is killed below
        kill_all_below(name)


def test_a_slow_retry_that_dies_again_is_the_same_problem_not_a_recovery(tmp_path: Path,
                                                                         zelador_factory):
    name = f"Dy{uuid.uuid4().hex[:6]}"
    laid = lay_out(tmp_path / "dy", name,
                   f"nohup ./{name} -c 'sleep 0.2; exit 1' >/dev/null 2>&1 &")
    try:
        z = zelador_factory(laid.config(
            "    restart: {burst: 3 in 1m, then: retry every 2s}\n")).start()
        z.wait_event("gave_up", "tree", timeout=20)
        for n in range(2, 4):  # each slow retry starts, dies young, and gives up again
            z.wait_event("gave_up", "tree", count=n, timeout=20)
            assert "slow retry" in z.matching("gave_up", "tree")[-1]["message"]
        retries = len(z.matching("started", "tree"))
        assert retries >= 5  # 3 in the burst, then the retries ran
        assert not z.matching("stable", "tree")  # never "back": the problem stays open
        wait_for(lambda: z.program("tree")["state"] in ("FATAL", "STARTING", "RUNNING"), 5,
                 "the slow retry's state")
    finally:
        z.stop()  # first: it would start again what is killed below
        kill_all_below(name)
