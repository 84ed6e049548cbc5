"""Deciding from check results (pure): `above X for N cycles`, `X of Y cycles`, `fails: N`,
and when a problem is over.

A `Streak` is what one rule or probe remembers: its last results and whether its problem is
open. `judge` takes a streak and one result and says what changed: FAILED (the problem opens: act
now), RECOVERED (it is over), AGAIN (still failing after our restart: act once more), or
nothing. Acting once per problem is the point: a memory rule that holds for an hour alerts once.
A restart is the one action worth repeating: after it (`acted`), the new instance is judged
afresh, and if the trigger holds again on its results alone, that is AGAIN; the program's own
burst limit then decides when restarting has stopped helping.

Recovery mirrors the trigger: a threshold problem is over after `cycles` clean samples in a row
(a value hovering at the line does not flap the alert), a probe's after one success.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from zelador.config.model import Threshold

FAILED, RECOVERED, AGAIN = "failed", "recovered", "again"


@dataclass(frozen=True)
class Streak:
    recent: tuple[bool, ...] = ()  # the last results, newest last; True: failing
    failing: bool = False  # the problem is open
    value: float | None = None  # the last measured value (None: a probe, or no sample)
    reason: str = ""  # the last result, for people ("connection refused", "612.4 MB")
    at: float | None = None  # wall time of the last result
    runs: int = 0  # results judged


def cycles_of(rule: Threshold, every: float) -> tuple[int, int]:
    """(cycles, window) for a rule sampled every `every` seconds: `for: 5m` at 10 s is 30 of 30."""
    if rule.span is None:
        return rule.cycles, rule.window
    cycles = max(1, math.ceil(rule.span / every - 1e-9))
    return cycles, cycles


def judge(streak: Streak, bad: bool, cycles: int, window: int, *, clean: int, at: float,
          reason: str = "", value: float | None = None,
          again: bool = False) -> tuple[Streak, str | None]:
    """One result. `cycles` of the last `window` bad: FAILED; `clean` good in a row: RECOVERED;
    with `again`, an open problem whose trigger holds on the results since `acted`: AGAIN."""
    recent = (*streak.recent, bad)[-max(window, clean):]
    new = replace(streak, recent=recent, value=value, reason=reason, at=at, runs=streak.runs + 1)
    triggered = sum(recent[-window:]) >= cycles
    if not streak.failing:
        return (replace(new, failing=True), FAILED) if triggered else (new, None)
    if len(recent) >= clean and not any(recent[-clean:]):
        return replace(new, failing=False), RECOVERED
    if again and triggered:
        return new, AGAIN
    return new, None


def acted(streak: Streak) -> Streak:
    """After a restart: the problem stays open, the new instance's results are counted afresh."""
    return replace(streak, recent=())


def judge_threshold(rule: Threshold, streak: Streak, value: float, every: float,
                    at: float, again: bool = False) -> tuple[Streak, str | None]:
    cycles, window = cycles_of(rule, every)
    return judge(streak, breached(rule, value), cycles, window, clean=cycles, at=at, value=value,
                 again=again)


def breached(rule: Threshold, value: float) -> bool:
    return value > rule.above or value < rule.below


def bound(rule: Threshold, value: float) -> tuple[str, float]:
    """The limit `value` is judged against, with its sign: (">", above) or ("<", below)."""
    if rule.below > -math.inf and (value < rule.below or rule.above == math.inf):
        return "<", rule.below
    return ">", rule.above


def judge_probe(streak: Streak, ok: bool, fails: int, at: float, reason: str,
                again: bool = False) -> tuple[Streak, str | None]:
    """`fails` consecutive failures open the problem; one success closes it."""
    return judge(streak, not ok, fails, fails, clean=1, at=at, reason=reason, again=again)
