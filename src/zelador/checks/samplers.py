"""Reading figures with psutil, on a worker thread: a program's and the system's.

Only what a rule asks for is read: a program with a memory rule costs one /proc read, not a
full oneshot; PSS (which reads smaps_rollup) only for a `pss` rule. CPU is the share of one core
over the time since the previous sample of the same process (the first sample has none).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable

import psutil

from zelador.config.model import Threshold
from zelador.programs.procstat import Gone, read_usage
from zelador.programs.states import Instance

ProcessKey = tuple[str, Instance]


class Sampler:
    """Keeps the previous CPU reading per (program, instance) and the system's."""

    def __init__(self) -> None:
        self._cpu: dict[ProcessKey, tuple[float, float]] = {}  # -> (cpu seconds, monotonic)
        self._procs: dict[Instance, psutil.Process] = {}  # built once per process: cheaper
        self._system_cpu_primed = False

    def program(self, name: str, instance: Instance,
                rules: Iterable[Threshold]) -> dict[str, float]:
        """The figures `rules` need for the program's instance (missing: it is gone)."""
        wanted = {r.metric for r in rules}
        children = any(r.children for r in rules)
        if wanted <= {"memory", "cpu"} and not children:
            return self._usage(name, instance, wanted)
        proc = self._procs.get(instance)
        if proc is None:
            proc = psutil.Process(instance.pid)
            if abs(proc.create_time() - instance.create_time) > 0.01:
                raise psutil.NoSuchProcess(instance.pid)  # the pid was reused
            self._procs[instance] = proc
        family = proc.children(recursive=True) if children or "children" in wanted else []
        out: dict[str, float] = {}
        with proc.oneshot():
            if "memory" in wanted:
                out["memory"] = float(proc.memory_info().rss)
                if children:
                    out["memory"] += sum(_quiet(lambda p=p: p.memory_info().rss, 0.0)
                                         for p in family)
            if "pss" in wanted:
                out["pss"] = float(getattr(proc.memory_full_info(), "pss", 0.0))
            if "threads" in wanted:
                out["threads"] = float(proc.num_threads())
            if "fds" in wanted:
                out["fds"] = float(proc.num_fds())
            if "children" in wanted:
                out["children"] = float(len(family))
            if "uptime" in wanted:
                out["uptime"] = uptime(proc.pid)
            if "cpu" in wanted:
                times = proc.cpu_times()
                used = times.user + times.system
                if children:
                    used += sum(_quiet(lambda p=p: sum(p.cpu_times()[:2]), 0.0) for p in family)
                self._cpu_share(out, (name, instance), used)
        return out

    def _usage(self, name: str, instance: Instance, wanted: set[str]) -> dict[str, float]:
        """memory and cpu alone (the usual rules): two small reads, no psutil objects."""
        try:
            started, used, rss = read_usage(instance.pid)
        except Gone:
            raise psutil.NoSuchProcess(instance.pid) from None
        if abs(started - instance.create_time) > 0.01:
            raise psutil.NoSuchProcess(instance.pid)  # the pid was reused
        out: dict[str, float] = {}
        if "memory" in wanted:
            out["memory"] = rss
        if "cpu" in wanted:
            self._cpu_share(out, (name, instance), used)
        return out

    def _cpu_share(self, out: dict[str, float], key: ProcessKey, used: float) -> None:
        now = time.monotonic()
        before = self._cpu.get(key)
        self._cpu[key] = (used, now)
        if before is not None and now > before[1]:
            out["cpu"] = max(0.0, (used - before[0]) / (now - before[1]) * 100.0)

    def forget(self, keep: set[ProcessKey]) -> None:
        for key in [k for k in self._cpu if k not in keep]:
            del self._cpu[key]
        instances = {instance for _, instance in keep}
        for instance in [i for i in self._procs if i not in instances]:
            del self._procs[instance]

    def system(self, rules: Iterable[Threshold]) -> dict[str, float]:
        """Per rule name, its figure now."""
        out: dict[str, float] = {}
        for rule in rules:
            value = self._system_figure(rule)
            if value is not None:
                out[rule.name] = value
        return out

    def _system_figure(self, rule: Threshold) -> float | None:
        metric = rule.metric
        if metric == "memory":
            return float(psutil.virtual_memory().percent)
        if metric == "swap":
            swap = psutil.swap_memory()
            return float(swap.percent) if swap.total else 0.0
        if metric == "load":
            load = os.getloadavg()[{1: 0, 5: 1, 15: 2}[rule.load]]
            return load / (os.cpu_count() or 1) if rule.per_core else load
        if metric == "cpu":
            share = float(psutil.cpu_percent(interval=None))
            primed, self._system_cpu_primed = self._system_cpu_primed, True
            return share if primed else None  # the first call has nothing to compare with
        if metric == "disk":
            assert rule.path is not None
            usage = shutil.disk_usage(rule.path)
            return usage.used / (usage.used + usage.free) * 100.0 if usage.total else 0.0
        if metric == "inodes":
            assert rule.path is not None
            stat = os.statvfs(rule.path)
            return (stat.f_files - stat.f_ffree) / stat.f_files * 100.0 if stat.f_files else 0.0
        return float(sum(1 for entry in os.listdir("/proc") if entry.isdigit()))


def _quiet(read: object, default: float) -> float:
    """A child's figure; a child that ended meanwhile counts as `default`."""
    try:
        return float(read())  # type: ignore[operator]
    except psutil.Error:
        return default


def uptime(pid: int) -> float:
    """Seconds process `pid` has run, on the boot clock: the kernel's start time in ticks since
    boot against CLOCK_BOOTTIME, so a step of the wall clock (NTP fixing a wrong RTC at boot)
    neither ages nor rejuvenates it (psutil's create_time is wall time)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
