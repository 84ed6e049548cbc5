"""Checks wired to the loop: timers start probes and samples on worker threads; their results
come back through `Loop.post`; checks/rules.py decides; actions are carried out here (a restart
through the supervisor's engine, a command through the launcher).

No check waits for another: each has at most one run in flight, and the probes' crew has a
thread for each check (workers.Crew: threads on demand, as many as there are checks plus a
few), so fifty probes hanging on a dead server delay none but themselves. A run with no result
PROBE_GRACE past its own timeout is given up on: counted as failed (and journaled once), and
left to end on its thread; while it still hangs its check starts no second one, so a check
never holds more than one thread. A result is judged only for the instance it looked at: a
health probe that ran while the program restarted says nothing about the new instance.

Every time that decides here is the loop's clock (never the wall clock: a step of it moves no
verdict; `for: 5m` is a count of samples taken on loop timers); the wall clock only stamps
results for people (`checked`) and dates a JSON check's items, which carry wall times.

Events: `check_failed` and `check_recovered` (ZELADOR_CHECK, ZELADOR_VALUE, ZELADOR_THRESHOLD,
ZELADOR_PROGRAM for a program's check), which reach the journal, the history and the alerts
like every event.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from zelador.checks import freshness, probes
from zelador.checks.metrics import PROGRAM_METRICS, SYSTEM_METRICS, show
from zelador.checks.rules import (
    AGAIN,
    FAILED,
    RECOVERED,
    Streak,
    acted,
    bound,
    cycles_of,
    judge_probe,
    judge_threshold,
)
from zelador.config.durations import format_duration
from zelador.config.model import Config, HttpCheck, Program, Threshold
from zelador.events import Event, Sink, event
from zelador.programs.states import Instance, Phase, ProgramState
from zelador.runtime.loop import Loop, Timer
from zelador.workers import Crew

SPARE_THREADS = 8  # beyond one a check: runs given up on that still hang after a reload
COMMAND_THREADS = 4  # checks' commands (each bounded at 60 s): these may wait in line
PROBE_GRACE = 5.0  # a probe with no result this long past its timeout is given up on
SAMPLE_DEADLINE = 30.0  # the same for reading figures (psutil has no timeout of its own)
CHECK = "check"

Runner = probes.Runner


@dataclass
class Entry:
    """One scheduled check: a program's health, its resources, the system, an HTTP check."""

    name: str
    kind: str  # health, resources, system, http
    every: float
    program: Program | None = None
    programs: tuple[Program, ...] = ()  # resources: every program sampled at this interval
    check: HttpCheck | None = None
    rules: tuple[Threshold, ...] = ()
    streaks: dict[str, Streak] = field(default_factory=dict)  # rule or item -> streak
    timer: Timer | None = None  # the next run
    flight: object | None = None  # the run in flight (a token), None when idle
    late: bool = False  # that run was given up on: its result, when it comes, is dropped
    overdue: Timer | None = None  # when it will be given up on
    instance: Instance | None = None  # the instance a health run looks at
    abandoned: int = 0  # runs given up on

    def spec(self) -> object:
        return (self.kind, self.every, self.program.health if self.program else None,
                self.rules, self.check, tuple((p.name, p.resources) for p in self.programs))


class CheckBook:
    def __init__(self, config: Config, *, loop: Loop, sinks: Sequence[Sink],
                 states: Callable[[], dict[str, ProgramState]],
                 restart: Callable[[str, str], None], runner: Runner,
                 wall: Callable[[], float] = time.time,
                 healthy: Callable[[str], None] = lambda name: None) -> None:
        self._healthy = healthy  # a program's health check passed: the engine hears it
        self.loop = loop
        self.sinks = sinks
        self._states = states
        self._restart = restart
        self._runner = runner
        self._wall = wall
        self._probes: Crew | None = None
        self._commands: Crew | None = None
        self._sampler: Any = None
        self.abandoned = 0  # runs given up on, all checks
        self.stale = 0  # results dropped: their instance was gone by then
        self.entries: dict[str, Entry] = {}
        self.configure(config)

    # --- configuration -----------------------------------------------------------------------

    def configure(self, config: Config) -> None:
        wanted: dict[str, Entry] = {}
        for prog in config.programs:
            if prog.health is not None:
                wanted[f"{prog.name}.health"] = Entry(f"{prog.name}.health", "health",
                                                      prog.health.every, program=prog)
        # one sampling run per interval for every program with rules: one wake-up of the loop
        # and one worker job a second for a hundred programs, not a hundred
        intervals = sorted({p.resources_every for p in config.programs if p.resources})
        for every in intervals:
            name = f"resources@{every:g}s"
            wanted[name] = Entry(name, "resources", every, programs=tuple(
                p for p in config.programs if p.resources and p.resources_every == every))
        if config.system:
            wanted["system"] = Entry("system", "system", config.system_every, rules=config.system)
        for check in config.checks:
            wanted[f"http:{check.name}"] = Entry(check.name, "http", check.every, check=check)
        for key, entry in wanted.items():
            old = self.entries.get(key)
            if old is not None and old.spec() == entry.spec():
                wanted[key] = old  # unchanged: keep its streaks and its schedule
            elif old is not None and old.timer is not None:
                old.timer.cancel()
        for key, old in self.entries.items():
            if key not in wanted and old.timer is not None:
                old.timer.cancel()
        self.entries = wanted
        if self.entries and self._probes is None:
            self._probes = Crew(len(wanted) + SPARE_THREADS, "check")
            self._commands = Crew(COMMAND_THREADS, "check-command")
            from zelador.checks.samplers import Sampler  # psutil readers: only when needed

            self._sampler = Sampler()
        elif self._probes is not None:
            self._probes.most = len(wanted) + SPARE_THREADS

    def start(self) -> None:
        for entry in self.entries.values():
            if entry.timer is None and entry.flight is None:
                self._arm(entry, 0.0)

    def close(self) -> None:
        for entry in self.entries.values():
            for timer in (entry.timer, entry.overdue):
                if timer is not None:
                    timer.cancel()
        for crew in (self._probes, self._commands):
            if crew is not None:
                crew.close()

    # --- scheduling --------------------------------------------------------------------------

    def _arm(self, entry: Entry, delay: float) -> None:
        entry.timer = self.loop.at(self.loop.clock() + delay, lambda: self._due(entry))

    def _due(self, entry: Entry) -> None:
        entry.timer = None
        if self.entries.get(self._key(entry)) is not entry:
            return  # removed by a reload
        if entry.flight is not None:  # the run given up on still hangs: it stays the only one
            self._hung(entry, "the probe before it still hangs")
            self._arm(entry, entry.every)
            return
        work = self._work(entry)
        if work is None:  # nothing to look at now (the program is not running)
            self._arm(entry, entry.every)
            return
        assert self._probes is not None
        token = object()
        entry.flight, entry.late = token, False
        self._probes.submit(work, lambda result, error: self.loop.post(
            lambda: self._done(entry, token, result, error)))
        entry.overdue = self.loop.at(self.loop.clock() + self._deadline(entry),
                                     lambda: self._overdue(entry, token))

    @staticmethod
    def _deadline(entry: Entry) -> float:
        """How long a run may take before it is given up on."""
        if entry.kind == "health" and entry.program is not None and entry.program.health:
            return entry.program.health.probe.timeout + PROBE_GRACE
        if entry.kind == "http" and entry.check is not None:
            return entry.check.probe.timeout + PROBE_GRACE
        return SAMPLE_DEADLINE

    def _overdue(self, entry: Entry, token: object) -> None:
        entry.overdue = None
        if entry.flight is not token or self.entries.get(self._key(entry)) is not entry:
            return
        entry.late = True
        entry.abandoned += 1
        self.abandoned += 1
        self._emit(event("degraded", f"check {entry.name}: no result within "
                         f"{format_duration(self._deadline(entry))}; the run is given up on "
                         "(it ends on its own thread) and counts as failed", priority=4))
        self._hung(entry, f"no result within {format_duration(self._deadline(entry))}")
        self._arm(entry, entry.every)

    def _hung(self, entry: Entry, why: str) -> None:
        """A probe that hangs past its deadline is a failed probe; figures are just missing."""
        if entry.kind == "health":
            self._judge_health(entry, probes.Result(False, why, self._deadline(entry)))
        elif entry.kind == "http":
            self._judge_http(entry, (probes.Result(False, why, self._deadline(entry)), None))

    @staticmethod
    def _key(entry: Entry) -> str:
        return f"http:{entry.name}" if entry.kind == "http" else entry.name

    def _work(self, entry: Entry) -> Callable[[], Any] | None:
        if entry.kind == "system":
            return lambda: self._sampler.system(entry.rules)
        if entry.kind == "http":
            assert entry.check is not None
            return lambda: probes.http_check(entry.check, self._runner)  # type: ignore[arg-type]
        if entry.kind == "resources":
            states = self._states()
            running = [(p, st.instance) for p in entry.programs
                       if (st := states.get(p.name)) is not None and st.phase == Phase.RUNNING
                       and st.instance is not None]
            return (lambda: self._sample_all(running)) if running else None
        assert entry.program is not None
        state = self._states().get(entry.program.name)
        if state is None or state.phase != Phase.RUNNING or state.instance is None:
            return None
        health = entry.program.health
        assert health is not None
        if self.loop.clock() - state.since < health.start_after:
            return None  # just started: give it start_after before judging it
        entry.instance = state.instance
        return lambda: probes.run(health.probe, self._runner)

    def _current(self, program: str, instance: Instance | None) -> bool:
        """Is `instance` still the program's running instance (pid and start time)?"""
        state = self._states().get(program)
        if (state is not None and state.phase == Phase.RUNNING and instance is not None
                and state.instance == instance):
            return True
        self.stale += 1
        return False

    def _done(self, entry: Entry, token: object, outcome: Any,
              error: BaseException | None) -> None:
        if entry.flight is not token:
            return
        entry.flight = None
        if entry.overdue is not None:
            entry.overdue.cancel()
            entry.overdue = None
        if entry.late:
            return  # already counted as failed, and the next run is armed
        if self.entries.get(self._key(entry)) is not entry:
            return
        if error is not None:
            outcome = None
            if not isinstance(error, psutil.Error):  # (the process ended: nothing to say)
                self._emit(event("degraded", f"check {entry.name}: {type(error).__name__}: "
                                 f"{error}", priority=4))
        self._arm(entry, entry.every)  # first: a judge that raises must not end the check
        if outcome is not None:
            getattr(self, f"_judge_{entry.kind}")(entry, outcome)

    # --- judging -----------------------------------------------------------------------------

    def _judge_health(self, entry: Entry, result: probes.Result) -> None:
        prog = entry.program
        assert prog is not None and prog.health is not None
        if not self._current(prog.name, entry.instance):
            return  # it looked at an instance that is gone: nothing said about the new one
        health, name = prog.health, f"{prog.name}.health"
        restart = health.action == "restart"
        streak, verdict = judge_probe(entry.streaks.get("health", Streak()), result.ok,
                                      health.fails, self._wall(), result.reason, again=restart)
        entry.streaks["health"] = streak
        if result.ok:
            self._healthy(prog.name)
        if verdict == RECOVERED:
            self._emit(event("check_recovered", f"{name}: healthy again: {result.reason}",
                             subject=name, subject_kind=CHECK, priority=5, program=prog.name))
            return
        if verdict is None:
            return
        doing = f"restarting {prog.name}" if restart else "alerting (action: alert)"
        self._emit(event("check_failed", f"{name}: {health.fails} failed checks in a row"
                         f"{' again, after the restart' if verdict == AGAIN else ''}, last: "
                         f"{result.reason}; {doing}", subject=name, subject_kind=CHECK,
                         priority=4, program=prog.name, action=health.action))
        if restart:
            self._restart(prog.name, f"health check failed {health.fails} times: {result.reason}")
            entry.streaks["health"] = acted(streak)

    def _sample_all(self, running: list[tuple[Program, Instance]]
                    ) -> dict[str, tuple[Instance, dict[str, float]]]:
        """On a worker: each running program's figures (one that just ended is left out)."""
        out = {}
        for prog, instance in running:
            try:
                out[prog.name] = (instance, self._sampler.program(prog.name, instance,
                                                                  prog.resources))
            except psutil.Error:
                continue
        self._sampler.forget({(p.name, i) for p, i in running})
        return out

    def _judge_resources(self, entry: Entry,
                         values: dict[str, tuple[Instance, dict[str, float]]]) -> None:
        for prog in entry.programs:
            if prog.name not in values:
                continue
            instance, figures = values[prog.name]
            if not self._current(prog.name, instance):
                continue  # the figures of an instance that is gone
            for rule in prog.resources:
                if rule.metric in figures:
                    self._judge_rule(entry, rule, figures[rule.metric],
                                     f"{prog.name}.{rule.name}", PROGRAM_METRICS[rule.metric],
                                     prog.name)

    def _judge_system(self, entry: Entry, values: dict[str, float]) -> None:
        for rule in entry.rules:
            if rule.name in values:
                self._judge_rule(entry, rule, values[rule.name], rule.name,
                                 SYSTEM_METRICS[rule.metric], None)

    def _judge_rule(self, entry: Entry, rule: Threshold, value: float, name: str, unit: str,
                    program: str | None) -> None:
        restart = rule.action == "restart" and program is not None
        streak, verdict = judge_threshold(rule, entry.streaks.get(name, Streak()), value,
                                          entry.every, self._wall(), again=restart)
        entry.streaks[name] = streak
        if verdict is None:
            return
        cycles, window = cycles_of(rule, entry.every)
        what = f"{_figure(rule)} {show(unit, value)}"
        sign, limit = bound(rule, value)  # above (">") or, a rule with below:, under ("<")
        fields = {"program": program, "value": f"{value:g}", "threshold": f"{limit:g}",
                  "action": rule.action}
        if verdict == RECOVERED:
            self._emit(event("check_recovered", f"{name}: {what}, back "
                             f"{'under' if sign == '>' else 'over'} {show(unit, limit)}",
                             subject=name, subject_kind=CHECK, priority=5, **fields))
            self._command(rule.command, name, value, limit, "check_recovered")
            return
        span = (f"{cycles} of the last {window} samples" if cycles != window else
                f"{cycles} samples in a row" if cycles > 1 else "")
        doing = {"restart": f"; restarting {program}", "command": "; running its command",
                 "alert": ""}[rule.action]
        self._emit(event("check_failed", f"{name}: {what} {sign} {show(unit, limit)}"
                         f"{' in ' + span if span else ''}"
                         f"{' again, after the restart' if verdict == AGAIN else ''}{doing}",
                         subject=name,
                         subject_kind=CHECK, priority=4, **fields))
        if restart and program is not None:
            self._restart(program, f"{what} {'above' if sign == '>' else 'under'} "
                          f"{show(unit, limit)}")
            entry.streaks[name] = acted(streak)
        self._command(rule.command, name, value, limit, "check_failed")

    def _judge_http(self, entry: Entry, outcome: tuple[probes.Result, Any]) -> None:
        check = entry.check
        assert check is not None
        result, ages = outcome
        streak, verdict = judge_probe(entry.streaks.get("", Streak()), result.ok, check.fails,
                                      self._wall(), result.reason)
        entry.streaks[""] = streak
        if verdict == FAILED:
            self._emit(event("check_failed", f"{check.name}: {result.reason}",
                             subject=check.name, subject_kind=CHECK, priority=4))
            self._command(check.command, check.name, None, None, "check_failed")
        elif verdict == RECOVERED:
            self._emit(event("check_recovered", f"{check.name}: {result.reason}",
                             subject=check.name, subject_kind=CHECK, priority=5))
            self._command(check.command, check.name, None, None, "check_recovered")
        if isinstance(ages, freshness.Ages):
            self._judge_items(entry, check, ages)

    def _judge_items(self, entry: Entry, check: HttpCheck, ages: freshness.Ages) -> None:
        assert check.json is not None
        now = self._wall()
        for item, age in ages.stale.items():
            key = f"item:{item}"
            if not entry.streaks.get(key, Streak()).failing:
                entry.streaks[key] = Streak(failing=True, at=now, value=age)
                subject = f"{check.name}/{item}"
                self._emit(event("check_failed", f"{subject}: not seen for "
                                 f"{format_duration(age)} (stale after "
                                 f"{format_duration(check.json.stale_after)})",
                                 subject=subject, subject_kind=CHECK, priority=4,
                                 value=f"{age:.0f}", threshold=f"{check.json.stale_after:g}"))
        for key in [k for k, s in entry.streaks.items() if k.startswith("item:") and s.failing]:
            item = key[5:]
            if item in ages.stale:
                continue
            why = ("seen again" if item in ages.fresh else
                   f"not seen for {format_duration(ages.ignored[item])}: past ignore_after, "
                   "no longer watched" if item in ages.ignored else "gone from the list")
            del entry.streaks[key]
            subject = f"{check.name}/{item}"
            self._emit(event("check_recovered", f"{subject}: {why}", subject=subject,
                             subject_kind=CHECK, priority=5))

    # --- actions and output ------------------------------------------------------------------

    def _command(self, argv: tuple[str, ...], name: str, value: float | None,
                 threshold: float | None, what: str) -> None:
        if not argv or self._commands is None:
            return
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ZELADOR_CHECK": name,
               "ZELADOR_EVENT": what, "ZELADOR_VALUE": "" if value is None else f"{value:g}",
               "ZELADOR_THRESHOLD": "" if threshold is None else f"{threshold:g}"}
        runner = self._runner

        def run() -> None:
            status, out = runner(list(argv), b"", 60.0, env)
            if status != 0:
                tail = out.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
                self.loop.post(lambda: self._emit(event(
                    "script_failed", f"{name}: its command {argv[0]} "
                    f"{'ran past 60s' if status is None else f'exited {status}'}"
                    f"{': ' + tail[0][:200] if tail[0] else ''}", priority=4)))

        self._commands.submit(run)

    def _emit(self, ev: Event) -> None:
        for sink in self.sinks:
            sink.emit(ev)

    def status(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.entries.values():
            for name, streak, unit, threshold in self._rows(entry):
                out.append({"name": name, "kind": entry.kind,
                            "state": "FAILING" if streak.failing else
                            ("OK" if streak.runs else "PENDING"),
                            "value": None if streak.value is None else show(unit, streak.value),
                            "raw": streak.value,
                            "threshold": threshold, "reason": streak.reason,
                            "checked": streak.at, "every": entry.every})
        return out

    def _rows(self, entry: Entry) -> list[tuple[str, Streak, str, str | None]]:
        if entry.kind in ("health", "http"):
            key = "health" if entry.kind == "health" else ""
            rows: list[tuple[str, Streak, str, str | None]] = [
                (entry.name, entry.streaks.get(key, Streak()), "count", None)]
            rows += [(f"{entry.name}/{k[5:]}", s, "seconds", None)
                     for k, s in entry.streaks.items() if k.startswith("item:")]
            return rows
        if entry.kind == "resources":
            return [(f"{p.name}.{r.name}", entry.streaks.get(f"{p.name}.{r.name}", Streak()),
                     PROGRAM_METRICS[r.metric], _limits(r, PROGRAM_METRICS[r.metric]))
                    for p in entry.programs for r in p.resources]
        return [(r.name, entry.streaks.get(r.name, Streak()), SYSTEM_METRICS[r.metric],
                 show(SYSTEM_METRICS[r.metric], r.above)) for r in entry.rules]


def _limits(rule: Threshold, unit: str) -> str:
    """A rule's threshold for `zelador checks`: "90%" (above), "< 2" or "> 8, < 2"."""
    if rule.below == -math.inf:
        return show(unit, rule.above)
    under = f"< {show(unit, rule.below)}"
    return under if rule.above == math.inf else f"> {show(unit, rule.above)}, {under}"


def _figure(rule: Threshold) -> str:
    if rule.metric in ("disk", "inodes"):
        return f"{rule.metric} {rule.path}"
    if rule.metric == "load":
        return f"load{rule.load}{' per core' if rule.per_core else ''}"
    return rule.metric
