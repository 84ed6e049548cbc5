"""What the root-only walk (config/host.py, issue 20) adds to a start: today's launch beside the
one before it, in one run, interleaved.

    .venv/bin/python -m bench.launch [--runs 300]

Run as root (the walk only runs as root). Both sides launch the same real start script through
`Launcher.start` (the spawn kill -> restart waits for) and wait for it to exit: "walk" is the
code as it is; "realpath" swaps in the check zelador had before (realpath, then stat up from the
target), kept here alone as the switch. The script sits behind a symlink in a folder four deep,
as vendor scripts do (/opt/vendor/current -> release/bin). Medians and the difference are printed:
the issue's budget is 1 ms per start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import zelador.programs.launcher as launcher_module
from zelador.config.host import check_root_only, host_problem
from zelador.config.model import Match, Program
from zelador.errors import UnsafeFileError


def realpath_check(path: str, what: str) -> None:
    """The check before issue 20: the resolved path, walked up from the target."""
    real = os.path.realpath(path)
    current = real
    while True:
        info = os.stat(current)
        if info.st_uid != 0 or (info.st_mode & 0o002 and not (
                os.path.isdir(current) and info.st_mode & 0o1000 and current != real)):
            raise UnsafeFileError(f"{what} {path!r}: {current!r}")
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def realpath_host_problem(program: Program, path: str, what: str = "start") -> str:
    if not os.path.exists(path):
        return "missing"
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        return "not executable"
    try:
        realpath_check(path, what)
    except UnsafeFileError as exc:
        return str(exc)
    return ""


def lay_out(root: Path) -> str:
    release = root / "opt" / "vendor" / "release-7" / "bin"
    release.mkdir(parents=True)
    script = release / "start.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    os.symlink("release-7", root / "opt" / "vendor" / "current")
    return str(root / "opt" / "vendor" / "current" / "bin" / "start.sh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the walk runs only as root")
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-launch-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    try:
        path = lay_out(root)
        program = Program(name="bench", match=Match(name="never-zz"), start=(path,))
        launcher = launcher_module.Launcher()
        checks: dict[str, list[float]] = {"walk": [], "realpath": []}
        starts: dict[str, list[float]] = {"walk": [], "realpath": []}
        sides = {"walk": (check_root_only, host_problem),
                 "realpath": (realpath_check, realpath_host_problem)}
        for i in range(args.runs):
            for side in (("walk", "realpath") if i % 2 else ("realpath", "walk")):
                check, problem = sides[side]
                began = time.perf_counter()
                check(path, "start script")
                checks[side].append(time.perf_counter() - began)
                launcher_module.host_problem = problem  # the switch, for this bench alone
                began = time.perf_counter()
                child = launcher.start(program)
                starts[side].append(time.perf_counter() - began)
                child.popen.wait()
                launcher.reap(child)
        launcher_module.host_problem = host_problem

        def ms(values: list[float]) -> float:
            return statistics.median(values) * 1000

        print(f"{args.runs} runs each, interleaved; script behind a symlink: {path}")
        print(f"{'':24}{'realpath (before)':>20}{'walk (now)':>14}{'difference':>14}")
        for label, data in (("check alone", checks), ("Launcher.start (spawn)", starts)):
            before, now = ms(data["realpath"]), ms(data["walk"])
            print(f"{label:24}{before:>17.3f} ms{now:>11.3f} ms{now - before:>+11.3f} ms")
        added = ms(starts["walk"]) - ms(starts["realpath"])
        print(f"added to kill -> restart: {added:+.3f} ms (budget 1 ms): "
              f"{'within' if added <= 1.0 else 'OVER'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
