"""A program that is a tree (a launcher and three workers) beside a single-process one, in one
zelador: kill -9 -> running again, and `zelador stop` -> every process of the tree gone.

    .venv/bin/python -m bench.trees [--kills 20] [--stops 10] [--gap 1.5]

Run as root. The tree's restart includes stopping the old workers (SIGTERM, which they obey)
before the new launcher starts; the single one has nothing to wait for: the ratio is what a
tree costs. `restart.stable` is 1s here so kills can be spaced by --gap (a healthy program that
dies, not a crash loop); everything else is as shipped. Medians and p90 in ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.supervisors import find, kills_of, pct, run_zelador
from zelador.cli.demo import lay_out_mfe, script_name
from zelador.runtime.control import ask

WORKERS = "sleep infinity & sleep infinity & sleep infinity & while :; do wait; done"


def lay_out(root: Path) -> tuple[str, str, str]:
    """The single program (a nohup'd sleep copy) and the tree (a bash copy with 3 workers)."""
    tag = uuid.uuid4().hex[:5]
    single, tree = f"Si{tag}", f"Tr{tag}"
    folder = Path(lay_out_mfe(str(root), (single,)))
    shutil.copy(shutil.which("bash") or "/bin/bash", folder / tree)
    script = folder / f"start-{tree}.sh"
    script.write_text(f"#!/bin/sh\ncd {folder} || exit 1\n"
                      f"nohup ./{tree} -c '{WORKERS}' >/dev/null 2>&1 &\n")
    script.chmod(0o755)
    config = f"""programs:
  single:
    match: {{name: {single}}}
    start: {folder / script_name(single)}
    restart: {{stable: 1s}}
  tree:
    match: {{name: {tree}}}
    start: {script}
    restart: {{stable: 1s}}
"""
    return single, tree, config


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as stream:
            return [int(p) for p in stream.read().split()]
    except OSError:
        return []


def up(sock: str, name: str, binary: str, workers: int, timeout: float = 30.0) -> int:
    """Wait until `name` is RUNNING with `workers` children; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        prog = next(p for p in ask(sock, {"cmd": "status"})["programs"] if p["name"] == name)
        pids = find(binary)
        if prog["state"] == "RUNNING" and len(pids) == 1 and len(children(pids[0])) >= workers:
            return pids[0]
        time.sleep(0.01)
    raise SystemExit(f"{name} did not come up with {workers} workers")


def stops(sock: str, name: str, binary: str, workers: int, count: int) -> list[float]:
    """`stop` (the request, then the state polled) until STOPPED, then started again."""
    out = []
    for _ in range(count):
        pid = up(sock, name, binary, workers)
        tree = [pid, *children(pid)]
        began = time.monotonic()
        ask(sock, {"cmd": "stop", "program": name})
        while True:
            prog = next(p for p in ask(sock, {"cmd": "status"})["programs"] if p["name"] == name)
            if prog["state"] == "STOPPED":
                break
            time.sleep(0.0005)
        out.append(time.monotonic() - began)
        left = [p for p in tree if os.path.exists(f"/proc/{p}") and not zombie(p)]
        if left:
            raise SystemExit(f"STOPPED with pids {left} of its tree still there")
        ask(sock, {"cmd": "start", "program": name})
    return out


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def figures(values: list[float]) -> str:
    return (f"p50 {statistics.median(values) * 1e3:7.1f} ms  p90 {pct(values, 0.9) * 1e3:7.1f} ms"
            f"  max {max(values) * 1e3:7.1f} ms  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--stops", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1.5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (zelador is a root daemon)")
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-trees-"))
    single, tree, config = lay_out(root / "mfe")
    zel = run_zelador(root / "daemon", config)
    sock = str(root / "daemon" / "run" / "control.sock")
    try:
        time.sleep(0.5)
        up(sock, "single", single, 0)
        up(sock, "tree", tree, 3)
        killed = kills_of([single, tree], args.kills, args.gap)
        print(f"kill -9 -> running again, side by side ({args.kills} kills each):")
        print(f"  single process  {figures(killed[single])}")
        print(f"  3-worker tree   {figures(killed[tree])}")
        ratio = statistics.median(killed[tree]) / statistics.median(killed[single])
        print(f"  tree / single   {ratio:.2f}x (medians)")
        # the new launcher exists before its workers: wait for them before stopping it
        single_stops = stops(sock, "single", single, 0, args.stops)
        tree_stops = stops(sock, "tree", tree, 3, args.stops)
        print("zelador stop -> STOPPED, every process of the tree gone:")
        print(f"  single process  {figures(single_stops)}")
        print(f"  3-worker tree   {figures(tree_stops)}")
    finally:
        zel.send_signal(signal.SIGTERM)
        zel.wait(10)
        for name in (single, tree):
            for pid in find(name):
                for child in children(pid):
                    os.kill(child, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
