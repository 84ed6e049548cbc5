"""zelador beside monit on the same stand-in MFE: restart latency, idle CPU, RSS, scan cost.

    .venv/bin/python -m bench.supervisors [--kills 50] [--gap 10.5] [--idle 30] [--extra 2000]

Run as root on an otherwise quiet machine. Each supervisor gets the same layout (nohup'd
daemons started by vendor-style scripts) and the same kill schedule; latency is measured from
our kill(2) to the moment a new process with the program's name exists. zelador runs with the
shipped restart policy (stable: 10s), so kills are spaced just beyond it (--gap): a healthy
program that dies, not a crash loop. The bench is not a subreaper unless --subreaper: orphans
go to this machine's PID 1, which reaps slowly, as on a terminal. Then zelador alone: a wrapper
that execs into its program 5 s after its script returns, and how soon zelador has it running.
Medians and ratios are printed, since the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import psutil

from zelador.cli.demo import lay_out_mfe, script_name
from zelador.config.reader import parse_config
from zelador.programs.proctable import ProcessTable


def names_in_proc(pids: set[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as comm:
                out[pid] = comm.read().strip()
        except OSError:
            pass
    return out


def find(name: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "status"])
            if p.info["name"] == name and p.info["status"] != psutil.STATUS_ZOMBIE]


def wait_new(name: str, old: int, timeout: float, seen: set[int]) -> float | None:
    """Poll cheaply (only pids not in `seen`, taken before the kill, are read) until a process
    `name` other than `old` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        names = names_in_proc(now - seen)  # read once: a second read could see the exec'd name
        if any(comm == name and pid != old for pid, comm in names.items()):
            return time.monotonic()
        # a pid whose comm was still the script's when read must be read again
        seen = now - {pid for pid, comm in names.items() if comm != name}
        time.sleep(0.0005)
    return None


class Layout:
    def __init__(self, root: Path, count: int) -> None:
        tag = uuid.uuid4().hex[:5]
        self.names = [f"Co{tag}{i:02d}" for i in range(count)]
        self.bin = Path(lay_out_mfe(str(root), tuple(self.names)))

    def script(self, name: str) -> Path:
        return self.bin / script_name(name)

    def zelador_config(self, interval: str) -> str:
        text = f"interval: {interval}\nprograms:\n"
        for i, name in enumerate(self.names):
            text += f"  p{i}:\n    match: {{name: {name}}}\n    start: {self.script(name)}\n"
        return text

    def monitrc(self, cycle: int, root: Path) -> str:
        text = (f"set daemon {cycle}\nset pidfile {root}/monit.pid\nset idfile {root}/monit.id\n"
                f"set statefile {root}/monit.state\nset logfile {root}/monit.log\n")
        for i, name in enumerate(self.names):
            text += (f'check process p{i} matching "^./{name} "\n'
                     f'  start program = "{self.script(name)}"\n')
        return text

    def kill_all(self) -> None:
        for name in self.names:
            for pid in find(name):
                os.kill(pid, signal.SIGKILL)


def run_zelador(root: Path, config: str) -> subprocess.Popen[bytes]:
    """A zelador with `config` and its folders under `root` (its log: root/zelador.log)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "zelador.yaml").write_text(config)
    return subprocess.Popen([sys.executable, "-m", "zelador", "run", "-c",
                             str(root / "zelador.yaml"), "--runtime-dir", str(root / "run"),
                             "--log-target", "stderr", "--logs-dir", str(root / "logs"),
                             "--state-dir", str(root / "state"), "--scopes", "no"],
                            stderr=open(root / "zelador.log", "wb"))


def start_zelador(layout: Layout, root: Path, interval: str) -> subprocess.Popen[bytes]:
    config = root / "zelador.yaml"
    config.write_text(layout.zelador_config(interval))
    return subprocess.Popen([sys.executable, "-m", "zelador", "run", "-c", str(config),
                             "--runtime-dir", str(root / "run"), "--log-target", "stderr",
                             "--logs-dir", str(root / "logs"), "--state-dir", str(root / "state"),
                             "--scopes", "no"], stderr=open(root / "zelador.log", "wb"))


def start_monit(layout: Layout, root: Path, cycle: int) -> subprocess.Popen[bytes]:
    rc = root / "monitrc"
    rc.write_text(layout.monitrc(cycle, root))
    rc.chmod(0o600)
    return subprocess.Popen(["monit", "-I", "-c", str(rc)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def settle(layout: Layout, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(len(find(n)) != 1 for n in layout.names):
        if time.monotonic() > deadline:
            raise SystemExit(f"programs did not come up: {[(n, find(n)) for n in layout.names]}")
        time.sleep(0.05)


def latencies(name: str, kills: int, timeout: float, gap: float) -> list[float]:
    """Kill `name` `kills` times; the wait between kills is `gap` plus a random part of a second,
    the same sequence for every supervisor, so kills do not land at one phase of a polling cycle."""
    out = []
    jitter = random.Random(2026)
    for _ in range(kills):
        time.sleep(gap + jitter.random())  # the instance lives beyond restart.stable first
        settle_one(name)
        (pid,) = find(name)
        before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        back = wait_new(name, pid, timeout, before)
        if back is None:
            print(f"  {name} (pid {pid}) did not come back within {timeout}s (counted as "
                  f"{timeout}s); running now: {find(name)}")
            for candidate in Path(tempfile.gettempdir()).glob("zelador-bench-*/zelador.log"):
                print(candidate.read_text(errors="replace")[-6000:], flush=True)
            back = killed + timeout
        out.append(back - killed)
    return out


def kills_of(names: list[str], rounds: int, gap: float) -> dict[str, list[float]]:
    """Kill each of `names` in turn, `rounds` times, so all see the same machine: latencies."""
    out: dict[str, list[float]] = {name: [] for name in names}
    jitter = random.Random(2026)
    for _ in range(rounds):
        for name in names:
            time.sleep(gap + jitter.random())
            (pid,) = find(name)
            before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            back = wait_new(name, pid, 30.0, before)
            out[name].append((back or killed + 30.0) - killed)
    return out


def settle_one(name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(find(name)) != 1:
        if time.monotonic() > deadline:
            for candidate in Path(tempfile.gettempdir()).glob("zelador-bench-*/zelador.log"):
                print(candidate.read_text(errors="replace")[-6000:], flush=True)
            raise SystemExit(f"{name}: {len(find(name))} instances after {timeout}s")
        time.sleep(0.01)


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid`, in ns (schedstat: finer than the 10 ms tick)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
            total += int(stat.read().split()[0])
    return total


def cpu_share(proc: psutil.Process, seconds: float) -> float:
    """Percent of one core the supervisor itself used over `seconds`."""
    before = cpu_ns(proc.pid)
    time.sleep(seconds)
    return 100.0 * (cpu_ns(proc.pid) - before) / 1e9 / seconds


def become_subreaper() -> None:
    """Adopt and reap orphans at once, as a real init does (this sandbox's PID 1 is slow to),
    so neither supervisor is judged by how long a killed daemon lingers as a zombie."""
    import ctypes
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def reap() -> None:
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.01)

    threading.Thread(target=reap, daemon=True).start()


def scan_cost(extra: int, programs: int) -> dict[str, float]:
    """Median ms of a full first scan and of incremental scans, with `extra` more processes."""
    sleeper = shutil.which("sleep") or "/bin/sleep"
    spawned = [subprocess.Popen([sleeper, "1000"]) for _ in range(extra)]
    time.sleep(1.5)  # older than the table's young window: not re-read by incremental scans
    try:
        config = parse_config("programs:\n" + "".join(
            f"  p{i}: {{match: {{name: Nothing{i}}}, start: /bin/true}}\n" for i in range(programs)))
        firsts, incs, iters = [], [], []
        for _ in range(5):
            table = ProcessTable(config.programs)
            t0 = time.perf_counter()
            table.scan()
            firsts.append(time.perf_counter() - t0)
            for _ in range(40):
                t0 = time.perf_counter()
                table.scan()
                incs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(psutil.process_iter(["name"]))
            iters.append(time.perf_counter() - t0)
        return {"pids": float(len(psutil.pids())), "first": statistics.median(firsts) * 1e3,
                "incremental": statistics.median(incs) * 1e3,
                "process_iter": statistics.median(iters) * 1e3}
    finally:
        for proc in spawned:
            proc.kill()
        for proc in spawned:
            with contextlib.suppress(ChildProcessError):
                proc.wait()


def late_exec(root: Path, runs: int) -> dict[str, float]:
    """From a wrapper's exec into the program (5 s after its script returned) to zelador showing
    the program RUNNING with that pid (polled on the control socket)."""
    from zelador.runtime.control import ask

    folder = root / "late"
    name = f"La{uuid.uuid4().hex[:5]}"
    bin_dir = Path(lay_out_mfe(str(folder), (name,)))
    script = bin_dir / script_name(name)
    script.write_text(f"#!/bin/sh\ncd {bin_dir}\n"
                      f"nohup sh -c 'sleep 5; exec ./{name} infinity' > /dev/null 2>&1 &\n")
    config = folder / "zelador.yaml"
    config.write_text(f"interval: 1s\nprograms:\n  late:\n    match: {{name: {name}}}\n"
                      f"    start: {script}\n    start_timeout: 20s\n")
    sock = str(folder / "run" / "control.sock")
    proc = subprocess.Popen([sys.executable, "-m", "zelador", "run", "-c", str(config),
                             "--runtime-dir", str(folder / "run"), "--log-target", "stderr",
                             "--logs-dir", str(folder / "logs"), "--state-dir", str(folder / "state"),
                             "--scopes", "no"], stderr=open(folder / "zelador.log", "wb"))  # noqa: SIM115
    out = []
    try:
        for _ in range(runs):
            before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
            appeared = wait_new(name, -1, 30.0, before)
            if appeared is None:
                raise SystemExit("late exec: the program never appeared")
            (pid,) = find(name)
            while True:
                prog = ask(sock, {"cmd": "status"})["programs"][0]
                if prog["state"] == "RUNNING" and prog["pid"] == pid:
                    out.append(time.monotonic() - appeared)
                    break
                time.sleep(0.001)
            # let it run beyond restart.stable (the shipped 10 s), so the next start is at once
            time.sleep(10.5)
            os.kill(pid, signal.SIGKILL)  # zelador starts the script again: 5 s to the next exec
    finally:
        proc.terminate()
        proc.wait(10)
        for pid in find(name):
            os.kill(pid, signal.SIGKILL)
    return {"p50": statistics.median(out) * 1e3, "p90": pct(out, 0.9) * 1e3, "max": max(out) * 1e3}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(label: str, start: Callable[[], subprocess.Popen[bytes]], layout: Layout,
            kills: int, idle: float, timeout: float, gap: float) -> dict[str, float]:
    proc = start()
    try:
        settle(layout)
        time.sleep(2)
        share = cpu_share(psutil.Process(proc.pid), idle)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        lat = latencies(layout.names[0], kills, timeout, gap)
    finally:
        proc.terminate()
        with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
            proc.wait(10)
        layout.kill_all()
    result = {"p50": statistics.median(lat) * 1e3, "p90": pct(lat, 0.9) * 1e3,
              "max": max(lat) * 1e3, "cpu": share, "rss": rss}
    print(f"{label:8} latency p50 {result['p50']:8.1f} ms  p90 {result['p90']:8.1f} ms  "
          f"max {result['max']:8.1f} ms | idle CPU {share:6.3f} % of a core | RSS {rss:5.1f} MiB",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--subreaper", action="store_true",
                        help="make the bench a fast-reaping subreaper (the easy world)")
    parser.add_argument("--late", type=int, default=8, help="late-exec measurements")
    parser.add_argument("--late-only", action="store_true", help="only the late-exec measurement")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU sampling")
    parser.add_argument("--programs", type=int, default=10)
    parser.add_argument("--extra", type=int, default=2000, help="extra processes for scan cost")
    parser.add_argument("--no-monit", action="store_true")
    parser.add_argument("--gap", type=float, default=10.5,
                        help="seconds a restarted instance lives before the next kill: just beyond "
                             "zelador's restart.stable (10s); monit also needs a gap, since it "
                             "counts an instance killed before its post-start check as failed")
    args = parser.parse_args()
    if args.subreaper:
        become_subreaper()
    with tempfile.TemporaryDirectory(prefix="zelador-bench-") as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        if args.late_only:
            late = late_exec(root, args.late)
            print(f"late exec: RUNNING p50 {late['p50']:.1f} ms, p90 {late['p90']:.1f} ms, "
                  f"max {late['max']:.1f} ms after the exec ({args.late} runs)")
            return
        layout = Layout(root / "mfe", args.programs)
        print(f"{args.programs} programs, interval/cycle 1s, {args.kills} kills of {layout.names[0]}",
              flush=True)
        if not args.no_monit and shutil.which("monit"):
            m = measure("monit", lambda: start_monit(layout, root, 1), layout, args.kills,
                        args.idle, 30.0, args.gap)
        z = measure("zelador", lambda: start_zelador(layout, root, "1s"), layout, args.kills,
                    args.idle, 10.0, args.gap)
        if not args.no_monit and shutil.which("monit"):
            print(f"ratios monit/zelador: latency p50 x{m['p50'] / z['p50']:.0f}, "
                  f"p90 x{m['p90'] / z['p90']:.0f}; idle CPU x{m['cpu'] / max(z['cpu'], 1e-6):.2f};"
                  f" RSS x{m['rss'] / z['rss']:.2f}")
        if args.late:
            late = late_exec(root, args.late)
            print(f"late exec (5 s after the script): zelador has it RUNNING p50 {late['p50']:.1f} ms"
                  f", p90 {late['p90']:.1f} ms, max {late['max']:.1f} ms after the exec "
                  f"({args.late} runs)", flush=True)
    cost = scan_cost(args.extra, args.programs)
    print(f"scan with {cost['pids']:.0f} pids on the host: first (full) {cost['first']:.1f} ms, "
          f"incremental {cost['incremental']:.2f} ms, psutil.process_iter(['name']) "
          f"{cost['process_iter']:.1f} ms (x{cost['process_iter'] / cost['incremental']:.0f})")


if __name__ == "__main__":
    main()
