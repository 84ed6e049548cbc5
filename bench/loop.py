"""The loop's own cost per callback, with the error boundary and the stale-key check, side by
side with the loop of another tree (by default main's, without them) in one run.

    .venv/bin/python -m bench.loop [--against /work/main/src] [--rounds 7]

Three figures, each the median of `--rounds` rounds, in nanoseconds per callback:
1. posted work: 20,000 `post()`ed callbacks drained in one turn;
2. ready fds: 200 readable pipes, one turn dispatching all of them (the stale-key check is here);
3. timers: 20,000 due timers run in one turn.
Each tree runs in a process of its own (the same interpreter), interleaved round by round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
from zelador.runtime.loop import Loop

def posted(loop, n=20000):
    for _ in range(n):
        loop.post(lambda: None)
    t = time.perf_counter_ns(); loop.turn(max_wait=0); return (time.perf_counter_ns() - t) / n

def fds(loop, n=200):
    pipes = [os.pipe() for _ in range(n)]
    for r, w in pipes:
        os.write(w, b"x"); loop.watch(r, lambda: None)
    loop.turn(max_wait=0)  # warm
    t = time.perf_counter_ns(); loop.turn(max_wait=0); took = time.perf_counter_ns() - t
    for r, w in pipes:
        loop.unwatch(r); os.close(r); os.close(w)
    return took / n

def timers(loop, n=20000):
    now = loop.clock()
    for _ in range(n):
        loop.at(now, lambda: None)
    t = time.perf_counter_ns(); loop.turn(max_wait=0); return (time.perf_counter_ns() - t) / n

loop = Loop()
print(json.dumps({"posted": posted(loop), "fds": fds(loop), "timers": timers(loop)}))
loop.close()
"""


def run(src: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True).stdout
    return dict(json.loads(out))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default="/work/main/src")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    results: dict[str, list[dict[str, float]]] = {"this tree": [], "against": []}
    for _ in range(args.rounds):
        results["this tree"].append(run(here))
        results["against"].append(run(args.against))
        time.sleep(0.1)
    print(f"{'ns per callback (median of ' + str(args.rounds) + ')':<36}"
          f"{'this tree':>12}{'against':>12}{'ratio':>8}")
    for kind in ("posted", "fds", "timers"):
        mine = statistics.median(r[kind] for r in results["this tree"])
        other = statistics.median(r[kind] for r in results["against"])
        print(f"{kind:<36}{mine:>12.0f}{other:>12.0f}{mine / other:>8.2f}")
    print(f"(against: {args.against})")


if __name__ == "__main__":
    main()
