"""A program is its tree under systemd (issue 21): the .deb on a booted Debian 12, where a
program's tree is its transient scope, so a worker that left it by double-forking into a session
of its own is still stopped with it.

One container for the module. The program `arvore` (a copy of bash) runs two workers `Folha`
(one deaf to SIGTERM) and an escapee `Fuga` (setsid, its parent gone: reparented to zelador,
outside the instance's descendants, inside its scope).
"""

from __future__ import annotations

import json

import pytest

from .conftest import Machine, wait_for

pytestmark = pytest.mark.system

CONFIG = "/etc/zelador/zelador.yaml"
ROOT = "/opt/arvore"
START = f"""#!/bin/sh
cd {ROOT} || exit 1
nohup ./Arvore -c './Folha infinity & (trap "" TERM; exec ./Folha infinity) & \
(setsid ./Fuga infinity &) ; while :; do wait; done' >/dev/null 2>&1 &
"""
PROGRAM = f"""  arvore:
    match: {{name: Arvore}}
    start: {ROOT}/start.sh
    stop: {{timeout: 2s}}
"""


def tree(machine: Machine) -> list[int]:
    """Every process of arvore's tree, once all of it runs (one Arvore, two Folha, one Fuga)."""
    def whole() -> list[int]:
        arvore, folha, fuga = (machine.pids(n) for n in ("Arvore", "Folha", "Fuga"))
        if len(arvore) == 1 and len(folha) == 2 and len(fuga) == 1:
            return [*arvore, *folha, *fuga]
        return []
    return list(wait_for(whole, 15, "arvore's whole tree"))


def gone(machine: Machine, pids: list[int]) -> None:
    wait_for(lambda: not machine.run(f"ps -o pid= -p {','.join(map(str, pids))}").stdout.strip(),
             10, f"{pids} gone")


def test_stop_restart_and_a_crash_leave_nothing_of_the_scope(bookworm: Machine) -> None:
    good = (bookworm.root / CONFIG.lstrip("/")).read_text()
    bookworm.sh(f"mkdir -p {ROOT} && cp /bin/bash {ROOT}/Arvore && cp /bin/sleep {ROOT}/Folha "
                f"&& cp /bin/sleep {ROOT}/Fuga && chmod 755 {ROOT} {ROOT}/Arvore {ROOT}/Folha "
                f"{ROOT}/Fuga")
    bookworm.write(f"{ROOT}/start.sh", START, 0o755)
    bookworm.write(CONFIG, good.replace("programs:\n", "programs:\n" + PROGRAM, 1))
    try:
        bookworm.sh("systemctl reload zelador")
        first = tree(bookworm)
        scope = bookworm.sh(f"cat /proc/{first[-1]}/cgroup")
        assert "zelador-arvore-start-" in scope, scope  # the escapee is in arvore's scope

        bookworm.sh("zelador stop arvore")  # returns once STOPPED
        gone(bookworm, first)  # the TERM-deaf Folha and the escaped Fuga included
        status = json.loads(bookworm.run("zelador status --json").stdout)  # exits 3: one down
        assert {p["name"]: p["state"] for p in status["programs"]}["arvore"] == "STOPPED"

        bookworm.sh("zelador start arvore")
        second = tree(bookworm)
        bookworm.sh("zelador restart arvore")
        third = tree(bookworm)
        assert not set(second) & set(third)
        gone(bookworm, second)

        bookworm.stable(third[0])  # a healthy program's death, not a failed start
        bookworm.sh(f"kill -9 {third[0]}")
        wait_for(lambda: [p for p in bookworm.pids("Arvore") if p != third[0]], 20,
                 "a new Arvore")
        fourth = tree(bookworm)
        gone(bookworm, third[1:])  # what the dead instance left in its scope went first
        assert not set(third) & set(fourth)
    finally:
        bookworm.write(CONFIG, good)
        bookworm.sh("systemctl reload zelador")
        bookworm.run("pkill -9 -x Arvore; pkill -9 -x Folha; pkill -9 -x Fuga")
