"""What zelador costs beside the rest of the terminal: exec events, memory, start-up, restarts.

    .venv/bin/python -m bench.footprint --base /tmp/zelador-base [--rounds 3] [--seconds 20]

Run as root (the proc connector). Every figure is side by side in one run: the code of this
tree ("ours") and of `--base`, a checkout of another commit (its src/ is put first on
PYTHONPATH), each watching its own 10 stand-in programs at `interval: 1s`:

1. CPU of zelador (all threads, % of one core, schedstat) idle and while another process execs
   /bin/true 200 times a second (bench/execs.c); `--rounds` alternations, medians.
2. A burst: 2,000 execs a second for 10 s; meanwhile late-exec wrappers (a process that execs
   into a watched program 0.3 s after it started) for each daemon: the time from the wrapper's
   exec to zelador's `duplicate` line (its millisecond stamp), and zelador's CPU over the burst.
3. RSS: a programs-only config (the shipped one without `web:`), the shipped one with the status
   page, and the report worker (a config with a job and the intake listener).
4. exec of `zelador run` to READY=1 on a real NOTIFY_SOCKET (10 programs already running).
5. kill -> restart latency of a program, both daemons' kills interleaved: p50 and p90.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.conftest import free_port

from bench.supervisors import Layout, cpu_ns, find, kills_of, pct, settle
from zelador.cli.demo import lay_out_mfe, script_name
from zelador.programs.procevents import open_proc_events

HERE = Path(__file__).resolve().parents[1]
SHIPPED = HERE / "config" / "zelador.yaml"


def env_for(code: Path | None) -> dict[str, str]:
    """Run `code` (None: this tree) with byte-code cached, as an installed package runs (its .pyc
    are compiled at install), in a folder of its own: the trees are not written to."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    label = "ours" if code is None else "base"
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / f"zelador-bench-pyc-{label}")
    if code is not None:
        env["PYTHONPATH"] = str(code / "src")
    return env


def run(code: Path | None, root: Path, config: str, **extra: str) -> subprocess.Popen[bytes]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "zelador.yaml").write_text(config)
    return subprocess.Popen([sys.executable, "-m", "zelador", "run", "-c",
                             str(root / "zelador.yaml"), "--runtime-dir", str(root / "run"),
                             "--log-target", "stderr", "--logs-dir", str(root / "logs"),
                             "--state-dir", str(root / "state"), "--scopes", "no"],
                            stderr=open(root / "zelador.log", "wb"),
                            env={**env_for(code), **extra})


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def execs(rate: int, seconds: float) -> subprocess.Popen[bytes]:
    binary = Path(tempfile.gettempdir()) / "zelador-bench-execs"
    if not binary.exists():
        subprocess.run(["cc", "-O2", "-o", str(binary), str(HERE / "bench" / "execs.c")],
                       check=True)
    return subprocess.Popen([str(binary), str(rate), str(seconds)], stdout=subprocess.PIPE)


def shares(pids: dict[str, int], seconds: float, rates: list[float]) -> dict[str, float]:
    """CPU of each pid over `seconds`; appends to `rates` the execs a second the machine ran
    meanwhile (this machine is shared: its "idle" is other people's work)."""
    counter = open_proc_events(("exec",))
    before = {k: cpu_ns(p) for k, p in pids.items()}
    began, seen = time.monotonic(), 0
    while time.monotonic() < began + seconds:
        time.sleep(0.05)
        seen += len(counter.read().execs) if counter is not None else 0
    used = {k: (cpu_ns(p) - before[k]) / 1e9 / seconds * 100 for k, p in pids.items()}
    if counter is not None:
        rates.append(seen / seconds)
        counter.close()
    return used


def cpu(daemons: dict[str, int], rounds: int, seconds: float) -> None:
    idle: dict[str, list[float]] = {k: [] for k in daemons}
    busy: dict[str, list[float]] = {k: [] for k in daemons}
    ran, quiet, loaded = [], [], []
    for _ in range(rounds):
        for label, got in shares(daemons, seconds, quiet).items():
            idle[label].append(got)
        load = execs(200, seconds + 2)
        time.sleep(1)
        for label, got in shares(daemons, seconds, loaded).items():
            busy[label].append(got)
        out, _ = load.communicate()
        ran.append(int(out or 0) / (seconds + 2))
    print(f"CPU, % of one core, medians of {rounds} x {seconds:.0f}s (the load ran "
          f"{statistics.median(ran):.0f} execs/s; all execs on the machine: idle "
          f"{statistics.median(quiet or [0]):.0f}/s, loaded {statistics.median(loaded or [0]):.0f}/s):")
    for case, got in (("idle, 10 programs at 1s", idle), ("200 execs/s elsewhere", busy)):
        ours, base = statistics.median(got["ours"]), statistics.median(got["base"])
        print(f"  {case:26} ours {ours:7.3f} %   base {base:7.3f} %   ratio "
              f"{ours / base if base else float('nan'):.3f}   (ours {fmt(got['ours'])}; "
              f"base {fmt(got['base'])})", flush=True)


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def stamp_of(line: str) -> float:
    """The wall-clock time of a log line (HH:MM:SS.mmm, today)."""
    clock = datetime.datetime.strptime(line[:12], "%H:%M:%S.%f").time()
    return datetime.datetime.combine(datetime.date.today(), clock).timestamp()


def late_wrapper(binary: Path, note: Path) -> subprocess.Popen[bytes]:
    code = ("import os, time; time.sleep(0.3); t = time.time(); "
            f"open({str(note)!r}, 'w').write(repr(t)); "
            f"os.execv({str(binary)!r}, [{str(binary)!r}, '1000'])")
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            cwd=binary.parent)


def seen_after(log: Path, pid: int, began: float, timeout: float = 5.0) -> float | None:
    pattern = re.compile(rf"\[duplicate .*pid={pid}\b")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines()[-200:]:
            if pattern.search(line):
                return stamp_of(line) - began
        time.sleep(0.005)
    return None


def burst(daemons: dict[str, int], layouts: dict[str, Layout], roots: dict[str, Path],
          wrappers: int) -> None:
    seconds = 10.0
    load = execs(2000, seconds)
    time.sleep(0.5)
    before = {k: cpu_ns(p) for k, p in daemons.items()}
    started = time.monotonic()
    late: dict[str, list[float]] = {k: [] for k in daemons}
    missed: dict[str, int] = {k: 0 for k in daemons}
    for i in range(wrappers):
        for label in daemons:
            name = layouts[label].names[1 + i % 9]
            note = roots[label] / f"late-{i}"
            wrapper = late_wrapper(layouts[label].bin / name, note)
            while not note.exists() or not note.read_text():
                time.sleep(0.002)
            got = seen_after(roots[label] / "zelador.log", wrapper.pid, float(note.read_text()))
            wrapper.kill()
            wrapper.wait()
            if got is None:
                missed[label] += 1
            else:
                late[label].append(got * 1000)
    out, _ = load.communicate()
    elapsed = time.monotonic() - started
    used = {k: (cpu_ns(p) - before[k]) / 1e9 / elapsed * 100 for k, p in daemons.items()}
    print(f"burst of 2,000 execs/s for {seconds:.0f}s (ran {int(out or 0) / seconds:.0f}/s): "
          f"late-exec wrapper seen after (ms), CPU of zelador over {elapsed:.1f}s:")
    for label in daemons:
        lat = late[label]
        print(f"  {label:5} median {statistics.median(lat) if lat else float('nan'):6.1f} ms  "
              f"max {max(lat) if lat else float('nan'):6.1f} ms  missed {missed[label]} of "
              f"{wrappers}   CPU {used[label]:6.2f} %   ({fmt(lat)})", flush=True)


def memory(bases: dict[str, Path | None], root: Path) -> None:
    port = free_port()
    tag = uuid.uuid4().hex[:5]  # names of our own: other processes on this machine are left be
    names = {"Comunicador": f"Co{tag}", "Monitor": f"Mo{tag}"}
    bin_dir = Path(lay_out_mfe(str(root / "mfe"), tuple(names.values())))
    shipped = SHIPPED.read_text().replace("/opt/sefaz/cco/bin", str(bin_dir))
    shipped = shipped.replace("127.0.0.1:9813", f"127.0.0.1:{port}")
    for name, ours in names.items():
        shipped = shipped.replace(f"name: {name}}}", f"name: {ours}}}")
        shipped = shipped.replace(script_name(name), script_name(ours))
    programs_only = "\n".join(line for line in shipped.splitlines() if not line.startswith("web:"))
    jobs = (programs_only + f"\njobs:\n  backup: {{every: 1h}}\nintake: {{listen: "
            f"'127.0.0.1:{free_port()}'}}\n")
    print("RSS, MB (after 3 s):")
    for case, text in (("programs only (shipped, no web)", programs_only),
                       ("shipped, with the status page", shipped),
                       ("report worker", jobs)):
        got = {}
        for label, code in bases.items():
            proc = run(code, root / f"rss-{label}", text)
            try:
                time.sleep(3)
                if case == "report worker":
                    workers = [int(p) for p in subprocess.run(
                        ["pgrep", "-P", str(proc.pid), "-f", "intakeworker"],
                        capture_output=True, text=True).stdout.split()]
                    got[label] = rss_mb(workers[0]) if workers else float("nan")
                else:
                    if case.startswith("shipped"):
                        with contextlib.suppress(OSError):
                            socket.create_connection(("127.0.0.1", port), 2).close()
                        time.sleep(0.5)
                    got[label] = rss_mb(proc.pid)
            finally:
                stop(proc)
                for name in names.values():
                    for pid in find(name):
                        os.kill(pid, signal.SIGKILL)
        print(f"  {case:34} ours {got['ours']:5.1f}   base {got['base']:5.1f}", flush=True)


def ready(bases: dict[str, Path | None], layouts: dict[str, Layout], root: Path,
          times: int) -> None:
    got: dict[str, list[float]] = {k: [] for k in bases}
    for code in bases.values():  # the first run of each writes its byte-code
        subprocess.run([sys.executable, "-c", "import zelador.cli.main, zelador.runtime.daemon"],
                       env=env_for(code), check=True)
    for i in range(times):
        for label, code in bases.items():
            path = root / f"notify-{label}-{i}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
            sock.settimeout(30)
            began = time.monotonic()
            proc = run(code, root / f"ready-{label}", layouts[label].zelador_config("1s"),
                       NOTIFY_SOCKET=str(path))
            try:
                while b"READY=1" not in sock.recv(4096):
                    pass
                got[label].append((time.monotonic() - began) * 1000)
            finally:
                stop(proc)
                sock.close()
    print(f"exec of `zelador run` to READY=1, ms (median of {times}, p90): " + "   ".join(
        f"{k} {statistics.median(v):6.1f} / {pct(v, 0.9):6.1f}" for k, v in got.items())
        + f"   ratio {statistics.median(got['ours']) / statistics.median(got['base']):.2f}",
        flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="a checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--wrappers", type=int, default=8)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--only", default="cpu,burst,memory,ready,kills")
    args = parser.parse_args()
    only = set(args.only.split(","))
    bases: dict[str, Path | None] = {"ours": None, "base": args.base.resolve()}
    root = Path(tempfile.mkdtemp(prefix="zelador-bench-"))
    layouts = {k: Layout(root / f"layout-{k}", 10) for k in bases}
    try:
        if "memory" in only:
            memory(bases, root)
        if "ready" in only:
            ready(bases, layouts, root, 7)
        roots = {k: root / f"daemon-{k}" for k in bases}
        daemons = {k: run(code, roots[k], layouts[k].zelador_config("1s"))
                   for k, code in bases.items()}
        try:
            for layout in layouts.values():
                settle(layout, 120)
            time.sleep(3)
            pids = {k: d.pid for k, d in daemons.items()}
            if "cpu" in only:
                cpu(pids, args.rounds, args.seconds)
            if "burst" in only:
                burst(pids, layouts, roots, args.wrappers)
            if "kills" in only:
                names = [layouts[k].names[0] for k in bases]
                lat = kills_of(names, args.kills, 10.5)
                print("kill -> restart, ms: " + "   ".join(
                    f"{k} p50 {statistics.median(lat[n]) * 1e3:6.1f} p90 "
                    f"{pct(lat[n], 0.9) * 1e3:6.1f}" for k, n in zip(bases, names)), flush=True)
        finally:
            for daemon in daemons.values():
                stop(daemon)
    finally:
        for layout in layouts.values():
            layout.kill_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
