"""The /proc reader against psutil on real processes: the same identities (create_time to the
last bit), names (also a name longer than comm), parents, sessions, argv, exe and user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

from zelador.checks.samplers import Sampler
from zelador.config.model import Match, Program, Threshold
from zelador.programs.procstat import Gone, read_stat, read_usage
from zelador.programs.proctable import ProcessTable, alive, read_proc
from zelador.programs.states import Instance

ALL = frozenset({"exe", "cmdline", "user"})


def psutil_view(pid: int) -> tuple[object, ...]:
    p = psutil.Process(pid)
    return (p.create_time(), p.name(), p.ppid(), os.getsid(pid), p.exe(), " ".join(p.cmdline()),
            p.username())


def our_view(pid: int) -> tuple[object, ...] | None:
    proc = read_proc(pid, ALL)
    if proc is None:
        return None
    return (proc.create_time, proc.name, proc.ppid, proc.sid, proc.exe, proc.cmdline, proc.user)


@pytest.fixture
def long_named(tmp_path):
    """A process whose name is longer than comm's 15 characters (psutil extends it)."""
    exe = tmp_path / "a-rather-long-program-name"
    shutil.copy("/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "30"])
    yield proc
    proc.kill()
    proc.wait()


def test_every_process_reads_as_psutil_reads_it(long_named):
    pids = [os.getpid(), 1, long_named.pid, *psutil.pids()[:50]]
    compared = 0
    for pid in pids:
        try:
            expected = psutil_view(pid)
        except psutil.Error:
            continue
        ours = our_view(pid)
        if ours is None and not psutil.pid_exists(pid):
            continue  # ended between the two reads (a busy machine)
        assert ours == expected, pid
        compared += 1
    assert compared >= 3
    assert (our_view(long_named.pid) or ())[1] == "a-rather-long-program-name"


def test_a_zombie_and_a_gone_pid_are_none_and_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        os.sched_yield()
    instance = Instance(child.pid, psutil.Process(child.pid).create_time())
    assert read_proc(child.pid, ALL) is None and not alive(instance)
    child.wait()
    with pytest.raises(Gone):
        read_stat(child.pid)
    assert read_proc(child.pid, ALL) is None and not alive(instance)


def test_the_table_reads_only_the_stat_of_a_process_no_program_can_match(long_named):
    """A program with a name: a process of another name is not read further (no argv)."""
    match = Match(name="a-rather-long-program-name", cmdline="30")
    table = ProcessTable([Program("p", match, ("true",))])
    verdicts = table.refresh([long_named.pid, os.getppid()])
    assert verdicts["p"].instance == Instance(long_named.pid,
                                              psutil.Process(long_named.pid).create_time())
    mine = table._known[os.getppid()]
    assert mine is not None and mine.cmdline is None and mine.exe is None
    assert table._known[long_named.pid].cmdline == f"{long_named.args[0]} 30"


def test_usage_reads_as_psutil_reads_it(long_named):
    """The sampler's memory and cpu figures (a sleeping process: nothing moves meanwhile)."""
    process = psutil.Process(long_named.pid)

    def psutil_usage() -> tuple[float, float, float]:
        with process.oneshot():
            return (process.create_time(), sum(process.cpu_times()[:2]),
                    float(process.memory_info().rss))

    for _ in range(1000):  # bracketed by two equal psutil reads: nothing moved in between
        before, ours, after = psutil_usage(), read_usage(long_named.pid), psutil_usage()
        if before == after:
            assert ours == before
            return
        time.sleep(0.01)  # still starting up (the loader, libc)
    raise AssertionError("the process never held still")


def test_the_sampler_says_a_reused_pid_is_gone(long_named):
    rules = [Threshold("m", "memory", 1e12), Threshold("c", "cpu", 1000.0)]
    real = Instance(long_named.pid, psutil.Process(long_named.pid).create_time())
    sampler = Sampler()
    assert sampler.program("p", real, rules)["memory"] > 0
    with pytest.raises(psutil.NoSuchProcess):
        sampler.program("p", Instance(real.pid, real.create_time - 5), rules)
