"""Random faults against zelador's invariants, for about half a minute (longer with
ZELADOR_FAULT_SECONDS; reproduce a run with ZELADOR_FAULT_SEED).

The world is the adverse one: Comunicador's launcher never reaps (killed daemons stay zombies),
the shipped `stable: 10s`, `duplicates: stop`, a program that is a family (a parent and two
children of the same name, like nginx), a wrapper that becomes its program 1.5 s late, and a start
script whose daemon setsid()s and which then hangs. Faults: kill -9 of a program, of a family's
parent or child, of zelador itself (started again, as systemd would), SIGHUP, a copy started by
hand, and SIGHUPs sent to zelador all through its start-up (from its first instruction: the
moment its SIGHUP handler exists) after a kill -9. A sampler watches /proc every few
milliseconds all along.

Invariants: zelador never exits; never two instances that zelador started of any program; no
program left without an instance longer than its policy allows (MAX_DOWN: a fault left
unanswered, as when a SIGHUP during start-up killed zelador); every program back and single after
the storm; zelador's CPU low once quiet (no spinning loop); the restart counters never go back
across zelador's own deaths (the state file).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import pids_named, wait_for, with_suppress_kill
from zelador.runtime.control import ask

SECONDS = float(os.environ.get("ZELADOR_FAULT_SECONDS", "30"))
# The longest a program may have no live process: max_delay 2s + start_timeout 1s + the late
# wrapper's 1.5s + zelador's own restart after a kill -9 (~1 s, more on a loaded machine). The
# failure this catches is minutes long (zelador dead of a SIGHUP during its start-up).
MAX_DOWN = 15.0


class ProcSampler(threading.Thread):
    """Counts live (non-zombie) processes per name, cheaply: /proc/PID/stat of new pids only."""

    def __init__(self, names: dict[str, str], every: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.names = names  # comm -> label
        self.every = every
        self.stop = threading.Event()
        self.excluded: set[int] = set()  # copies started by hand: not zelador's
        self.worst: dict[str, int] = dict.fromkeys(names.values(), 0)
        self.seen_two: list[str] = []
        self.down_since: dict[str, float] = {}  # label -> when it was last seen with no process
        self.longest_down: dict[str, float] = dict.fromkeys(names.values(), 0.0)
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[str, int]] = {}  # pid -> (comm, ppid) of processes we watch

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(self.every)

    def sample(self) -> None:
        live: dict[str, list[tuple[int, int]]] = {}
        now = time.monotonic()
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    data = stat.read()
            except OSError:
                continue
            comm = data[data.index(b"(") + 1:data.rindex(b")")].decode(errors="replace")
            if comm not in self.names:
                continue
            fields = data[data.rindex(b")") + 2:].split()
            if fields[0] == b"Z":
                continue
            live.setdefault(comm, []).append((pid, int(fields[1])))
        with self._lock:
            for comm, label in self.names.items():
                procs = [(p, pp) for p, pp in live.get(comm, []) if p not in self.excluded]
                mine = {p for p, _ in procs}
                tops = [p for p, pp in procs if pp not in mine]  # family members do not count
                self.worst[label] = max(self.worst[label], len(tops))
                if len(tops) > 1:
                    self.seen_two.append(f"{label}: {sorted(tops)}")
                if live.get(comm):  # any live process, a copy by hand included, is "up"
                    self.down_since.pop(label, None)
                else:
                    since = self.down_since.setdefault(label, now)
                    self.longest_down[label] = max(self.longest_down[label], now - since)

    def exclude(self, pid: int) -> None:
        with self._lock:
            self.excluded.add(pid)

    def start_excluded(self, argv: list[str]) -> subprocess.Popen[bytes]:
        """Start a copy by hand, excluded before any sample can count it: the count of a sample
        taken meanwhile waits for the lock, and sees the copy excluded."""
        with self._lock:
            copy = subprocess.Popen(argv, start_new_session=True)
            self.excluded.add(copy.pid)
        return copy


def lay_out_family(folder: Path, name: str, child: str) -> Path:
    """A family program: `name` (a copy of sh) runs two children of the same name, like nginx's
    master and workers; each child runs a sleep named `child`."""
    shutil.copy("/bin/sh", folder / name)
    shutil.copy(shutil.which("sleep") or "/bin/sleep", folder / child)
    script = folder / f"run-{name}.sh"
    body = f"./{name} -c './{child} infinity' & ./{name} -c './{child} infinity' & wait"
    script.write_text(f"#!/bin/sh\ncd {folder}\nnohup ./{name} -c \"{body}\" > /dev/null 2>&1 &\n")
    script.chmod(0o755)
    return script


def test_random_faults_never_break_the_invariants(stubborn_mfe, zelador_factory, tmp_path):
    mfe = stubborn_mfe
    seed = int(os.environ.get("ZELADOR_FAULT_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    print(f"fault injection: seed {seed}, {SECONDS}s")
    tag = mfe.com[2:]
    fam, fam_child = f"Fa{tag}", f"Fc{tag}"
    late, hung = f"La{tag}", f"Hu{tag}"
    family_script = lay_out_family(mfe.bin, fam, fam_child)
    for name in (late, hung):
        shutil.copy(shutil.which("sleep") or "/bin/sleep", mfe.bin / name)
    late_script = mfe.bin / "run-late.sh"
    late_script.write_text(f"#!/bin/sh\ncd {mfe.bin}\n"
                           f"nohup sh -c 'sleep 1.5; exec ./{late} infinity' > /dev/null 2>&1 &\n")
    hung_script = mfe.bin / "run-hung.sh"
    hung_script.write_text(f"#!/bin/sh\ncd {mfe.bin}\nsetsid ./{hung} infinity > /dev/null 2>&1 &\n"
                           "exec sleep 1000\n")
    for script in (late_script, hung_script):
        script.chmod(0o755)
    policy = "    restart: {max_delay: 2s, burst: 1000 in 1m}\n"  # stable: the shipped 10s
    config = mfe.config(defaults=True, extra_com=policy + "    duplicates: stop\n",
                        extra_mon=policy) + f"""  family:
    match: {{name: {fam}}}
    start: {family_script}
    stop: {{timeout: 1s}}
{policy}  late:
    match: {{name: {late}}}
    start: {late_script}
{policy}  hung:
    match: {{name: {hung}}}
    start: {hung_script}
    start_timeout: 1s
{policy}"""
    programs = {"comunicador": mfe.com, "monitor": mfe.mon, "family": fam, "late": late,
                "hung": hung}
    sampler = ProcSampler({v: k for k, v in programs.items()})
    z = zelador_factory(config).start()
    by_hand: list[subprocess.Popen[bytes]] = []
    try:
        try:
            wait_for(lambda: all_running(z, programs), 20, "every program up")
        except AssertionError:
            print(z.status(), z.log.read_text()[-5000:])
            raise
        sampler.start()
        deadline = time.monotonic() + SECONDS
        faults: list[str] = []
        while time.monotonic() < deadline:
            fault = rng.choice(["kill", "kill", "kill", "family", "zelador", "hup", "by_hand",
                                "hup_at_start"])
            faults.append(fault)
            if fault in ("kill", "family"):
                victim = rng.choice(list(programs.values())) if fault == "kill" else fam
                members = pids_named(victim)
                if members:
                    pid = rng.choice(members) if fault == "family" else members[0]
                    for orphan in below(pid, members):  # its leftovers: not a new instance
                        sampler.exclude(orphan)
                    with_suppress_kill(pid)
            elif fault in ("zelador", "hup_at_start"):
                before = counters(z)
                z.proc.kill()
                z.proc.wait()
                z.start(wait_ready=False)
                if fault == "hup_at_start":
                    assert hup_through_start_up(z)[0] > 0, "no SIGHUP during start-up"
                wait_for(lambda: alive_socket(z), 10, "zelador back")
                after = counters(z)
                for name, count in before.items():
                    assert after.get(name, 0) >= count, f"{name}: restarts {count} -> {after}"
            elif fault == "hup":
                z.signal(signal.SIGHUP)
            elif fault == "by_hand":
                by_hand.append(sampler.start_excluded([str(mfe.bin / mfe.com), "1000"]))
            assert z.proc.poll() is None, z.log.read_text()[-3000:]
            time.sleep(rng.uniform(0.2, 0.8))
        print("faults:", {f: faults.count(f) for f in set(faults)})
        for copy in by_hand:
            copy.kill()
            copy.wait()
        # back within policy: max_delay 2s, start_timeout <= 5s, the late wrapper 1.5s
        try:
            wait_for(lambda: all_running(z, programs) and all(
                len(tops(name)) == 1 for name in programs.values()), 30, "every program back")
        except AssertionError:
            print({n: tops(c) for n, c in programs.items()}, z.status())
            print(z.log.read_text()[-6000:])
            raise
    finally:
        sampler.stop.set()
        if sampler.is_alive():
            sampler.join()
        for copy in by_hand:
            copy.kill()
            copy.wait()
        for name in (fam, fam_child, late, hung):
            for pid in pids_named(name):
                with_suppress_kill(pid)
    assert not sampler.seen_two, sampler.seen_two[:5]
    assert all(n <= 1 for n in sampler.worst.values()), sampler.worst
    unanswered = {k: round(v, 1) for k, v in sampler.longest_down.items() if v > MAX_DOWN}
    assert not unanswered, f"left without an instance past its policy: {unanswered}"
    # Once the faults stop, zelador settles (a restart of its own just before the end still
    # has its start-up to do): one of five seconds in a row must be quiet; a spin fails all.
    used = []
    for _ in range(5):
        cpu_before = cpu(z.proc.pid)
        quiet = time.monotonic() + 1.0
        wait_for(lambda q=quiet: time.monotonic() > q, 2, "a quiet second")
        used.append(cpu(z.proc.pid) - cpu_before)
        if used[-1] < 0.1:
            break
    assert min(used) < 0.1, f"zelador spins when nothing happens: {used} s of CPU per second"
    assert sum(counters(z).values()) >= 1  # the faults did happen


def handles(pid: int, signum: int) -> bool:
    """True once `pid` has a handler for `signum` (its bit in /proc/PID/status SigCgt)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def handles_sighup(pid: int) -> bool:
    """zelador's first instruction gives SIGHUP a handler (zelador/early.py)."""
    return handles(pid, signal.SIGHUP)


def hup_through_start_up(z, until: str = "socket") -> tuple[int, int]:
    """SIGHUP zelador as fast as this thread can, from the moment it handles SIGHUP (before
    that, the interpreter itself is still starting and any process would die of it) until it
    answers on its socket (or `until="ready"`: its ready line). Returns how many were sent, and
    how many of them before the loop's own handlers existed (the loop gives SIGCHLD a handler
    with them, as a subreaper)."""
    assert z.proc is not None
    wait_for(lambda: handles_sighup(z.proc.pid) or z.proc.poll() is not None, 10,
             "zelador's first instruction")
    sent = before_loop = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and z.proc.poll() is None:
        if not handles(z.proc.pid, signal.SIGCHLD):
            before_loop += 1
        z.signal(signal.SIGHUP)
        sent += 1
        if sent % 8 == 0 and (alive_socket(z) if until == "socket" else z.matching("ready")):
            break
        time.sleep(0.002)
    assert z.proc.poll() is None, f"zelador died of a SIGHUP during start-up:\n{z.log.read_text()}"
    return sent, before_loop


def test_sighup_all_through_start_up_becomes_a_reload(mfe, zelador_factory):
    """A reload sent right after a restart (a script, a log-rotation hook): zelador comes up,
    reloads, and supervises."""
    z = zelador_factory(mfe.config()).start(wait_ready=False)
    sent, before_loop = hup_through_start_up(z, until="ready")
    assert before_loop >= 3, f"{sent} SIGHUPs, {before_loop} before the loop's handlers"
    z.wait_event("ready")
    z.wait_event("reloaded")  # the pending SIGHUPs: applied once the loop's handler exists
    wait_for(lambda: z.program("comunicador")["state"] == "RUNNING", 20, "comunicador up")
    pid = z.program("comunicador")["pid"]
    with_suppress_kill(pid)
    wait_for(lambda: z.program("comunicador")["pid"] not in (None, pid), 20, "restarted")


def test_sigterm_during_start_up_is_a_clean_stop(mfe, zelador_factory):
    z = zelador_factory(mfe.config()).start(wait_ready=False)
    assert z.proc is not None
    wait_for(lambda: handles_sighup(z.proc.pid), 10, "zelador's first instruction")
    assert not handles(z.proc.pid, signal.SIGCHLD), "the loop is up already: too late a test"
    z.signal(signal.SIGTERM)
    assert z.proc.wait(30) == 0, z.log.read_text()
    assert z.matching("shutdown"), z.log.read_text()


def test_random_faults_on_trees_leave_one_tree_each(zelador_factory, tmp_path):
    """Trees under faults (issue 21): a launcher with three workers (one deaf to SIGTERM) and a
    vendor's respawn loop. Faults: kill -9 of a launcher, of a worker, of the looped daemon;
    `restart` of either; SIGHUP (not zelador's own death: what it was stopping when it died is
    not in its state file, so a TERM-deaf worker it had not yet killed stays). Invariants: never two
    launchers, loops or looped daemons at once (sampled all along); afterwards exactly one tree
    of each, and nothing of an old tree left."""
    seed = int(os.environ.get("ZELADOR_FAULT_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    seconds = SECONDS / 2
    print(f"tree faults: seed {seed}, {seconds}s")
    tag = os.urandom(3).hex()
    launcher, worker, loop, daemon = f"Tl{tag}", f"Tw{tag}", f"Lp{tag}", f"Vd{tag}"
    folder = tmp_path / "trees"
    folder.mkdir()
    folder.chmod(0o755)
    shutil.copy(shutil.which("bash") or "/bin/bash", folder / launcher)
    shutil.copy("/bin/sh", folder / loop)
    for name in (worker, daemon):
        shutil.copy(shutil.which("sleep") or "/bin/sleep", folder / name)
    work = (f"./{worker} infinity & ./{worker} infinity & (trap '' TERM; exec ./{worker} "
            "infinity) & while :; do wait; done")
    (folder / "run-tree.sh").write_text(
        f"#!/bin/sh\ncd {folder}\nnohup ./{launcher} -c \"{work}\" >/dev/null 2>&1 &\n")
    (folder / "run-loop.sh").write_text(
        f"#!/bin/sh\ncd {folder}\nnohup ./{loop} -c 'while :; do ./{daemon} infinity; sleep 1; "
        "done' >/dev/null 2>&1 &\n")
    for script in ("run-tree.sh", "run-loop.sh"):
        (folder / script).chmod(0o755)
    policy = "    restart: {max_delay: 2s, burst: 1000 in 1m}\n    stop: {timeout: 1s}\n"
    z = zelador_factory(f"""programs:
  tree:
    match: {{name: {launcher}}}
    start: {folder / "run-tree.sh"}
{policy}  vendor:
    match: {{name: {daemon}}}
    start: {folder / "run-loop.sh"}
{policy}""").start()
    programs = {"tree": launcher, "vendor": daemon}
    sampler = ProcSampler({launcher: "tree", daemon: "vendor", loop: "loop"})
    try:
        wait_for(lambda: all_running(z, programs) and len(pids_named(worker)) == 3, 20,
                 "both trees up")
        sampler.start()
        deadline = time.monotonic() + seconds
        faults: list[str] = []
        while time.monotonic() < deadline:
            fault = rng.choice(["launcher", "worker", "daemon", "daemon", "restart", "hup"])
            faults.append(fault)
            if fault in ("launcher", "worker", "daemon"):
                name = {"launcher": launcher, "worker": worker, "daemon": daemon}[fault]
                members = pids_named(name)
                if members:
                    with_suppress_kill(rng.choice(members))
            elif fault == "restart":
                with contextlib.suppress(Exception):
                    ask(z.socket, {"cmd": "restart", "program": rng.choice(list(programs))})
            else:
                z.signal(signal.SIGHUP)
            assert z.proc.poll() is None, z.log.read_text()[-3000:]
            time.sleep(rng.uniform(0.2, 0.8))
        print("faults:", {f: faults.count(f) for f in set(faults)})
        try:
            wait_for(lambda: all_running(z, programs) and len(tops(launcher)) == 1
                     and len(pids_named(loop)) == 1 and len(pids_named(daemon)) == 1
                     # its workers (fewer when one was killed since it started), and
                     # nothing of an older tree
                     and sorted(below(tops(launcher)[0], pids_named(worker)))
                     == sorted(pids_named(worker)), 30, "one tree of each, nothing older")
        except AssertionError:
            print({n: pids_named(n) for n in (launcher, worker, loop, daemon)}, z.status())
            print(z.log.read_text()[-6000:])
            raise
    finally:
        sampler.stop.set()
        if sampler.is_alive():
            sampler.join()
        z.stop()  # first: it would start what we kill
        for name in (loop, launcher, worker, daemon):
            for pid in pids_named(name):
                with_suppress_kill(pid)
    assert not sampler.seen_two, sampler.seen_two[:5]


def tops(name: str) -> list[int]:
    """Live processes named `name` whose parent is not named `name` (family members excluded)."""
    live = pids_named(name)
    out = []
    for pid in live:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid not in live:
            out.append(pid)
    return out


def below(pid: int, candidates: list[int]) -> list[int]:
    """Which of `candidates` are children of `pid` (they will be orphans once it dies)."""
    out = []
    for child in candidates:
        try:
            with open(f"/proc/{child}/stat", "rb") as stat:
                if int(stat.read().rsplit(b")", 1)[1].split()[1]) == pid:
                    out.append(child)
        except OSError:
            continue
    return out


def all_running(z, programs: dict[str, str]) -> bool:
    try:
        states = {p["name"]: p["state"] for p in z.status()["programs"]}
    except Exception:
        return False
    return all(states.get(name) == "RUNNING" for name in programs)


def alive_socket(z) -> bool:
    try:
        z.status()
    except Exception:
        return False
    return True


def counters(z) -> dict[str, int]:
    return {p["name"]: int(p["restarts"]) for p in z.status()["programs"]}


def cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the faults include kill -9 of "
                                "processes started by root")
