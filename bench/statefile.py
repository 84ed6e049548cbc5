"""state.json: what the loop thread pays per save, written inline (as before issue 19) or handed
to the StateWriter thread (now), side by side in one run.

    .venv/bin/python -m bench.statefile [--saves 300] [--dir /var/lib/zelador-bench]

A typical state (2 programs, 5 jobs, ~2 KB) is saved `--saves` times each way, interleaved
(inline, handed over, inline, ...) so both see the same disk. "inline" is `state.save` on the
caller: an O_EXCL temporary, write, fsync, rename. "handed over" is `StateWriter.save`: the
writer thread does the same while the caller goes on. Medians and p90 of the caller's time, in
microseconds, and their ratio; then how long the writer took to have the last save on disk.
Use a folder on the real disk (the default is under /var/tmp): tmpfs makes fsync free.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zelador.store import state


def sample_state(n: int) -> dict[str, Any]:
    programs = {name: {"restarts": n, "attempts": n, "failures": 0, "last_exit":
                       f"pid {1000 + n} exited with status 1", "restarting": False}
                for name in ("comunicador", "monitor")}
    jobs = {f"job{i}": {"phase": "OK", "since": 1.7e9 + n, "expected": 1.7e9 + 3600,
                        "runs": [], "last": {"run_id": str(n), "result": "OK", "ended": 1.7e9,
                                             "message": "x" * 200}, "serial": n}
            for i in range(5)}
    return {"version": 1, "saved_at": time.time(), "programs": programs, "jobs": jobs}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=300)
    parser.add_argument("--dir", default="/var/tmp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        inline_path = str(Path(folder) / "inline.json")
        handed_path = str(Path(folder) / "handed.json")
        writer = state.StateWriter(handed_path, lambda text, cleared: print("writer:", text))
        inline: list[float] = []
        handed: list[float] = []
        try:
            for n in range(args.saves):
                data = sample_state(n)
                start = time.perf_counter()
                state.save(inline_path, data)
                inline.append(time.perf_counter() - start)
                start = time.perf_counter()
                writer.save(data)
                handed.append(time.perf_counter() - start)
                time.sleep(0.002)  # the loop does other things between two saves
            start = time.perf_counter()
            assert writer.close(30.0)
            drained = time.perf_counter() - start
        finally:
            writer.close(1.0)
        size = Path(inline_path).stat().st_size
    print(f"state.json of {size} bytes, {args.saves} saves each way, in {args.dir}")
    print(f"{'caller pays (us)':<22}{'median':>10}{'p90':>10}")
    for name, values in (("inline (write+fsync)", inline), ("handed to StateWriter", handed)):
        print(f"{name:<22}{statistics.median(values) * 1e6:>10.1f}{pct(values, 0.9) * 1e6:>10.1f}")
    ratio = statistics.median(inline) / statistics.median(handed)
    print(f"median ratio inline/handed: {ratio:.0f}x; the writer had the last save on disk "
          f"{drained * 1e3:.1f} ms after close()")


if __name__ == "__main__":
    main()
