"""When to start again: backoff after consecutive failures, the burst limit, the slow retry."""

from __future__ import annotations

from collections.abc import Iterable

from zelador.config.model import Restart
from zelador.programs.states import Phase, ProgramState

BACKOFF_STEP = 1.0  # consecutive failures wait 1s, 2s, 4s ... (then capped by max_delay)


def restart_delay(policy: Restart, failures: int) -> float:
    """Seconds to wait before the next start, given how many starts in a row have failed.

    The first restart of a program that had been running fine waits only `policy.delay`
    (0 by default: at a point of sale a sale may be waiting). Failures back off exponentially.
    """
    if failures <= 0:
        return policy.delay
    step = max(policy.delay, BACKOFF_STEP) * 2.0 ** (failures - 1)
    return min(policy.max_delay, step)


def prune_starts(policy: Restart, starts: tuple[float, ...], now: float) -> tuple[float, ...]:
    """Only the start times still inside the burst window."""
    return tuple(t for t in starts if now - t < policy.window)


def burst_exceeded(policy: Restart, starts: tuple[float, ...], now: float) -> bool:
    """True when one more start would pass `burst` starts within `window`."""
    return len(prune_starts(policy, starts, now)) >= policy.burst


START_POLL_FAST = 0.02  # look this often while a started program has not shown up yet ...
START_POLL_SLOW = 0.25  # ... and this often once it is slower than FAST_FOR
FAST_FOR = 2.0


def next_scan(states: Iterable[ProgramState], last_scan: float, interval: float) -> float:
    """When to look at the process table next.

    The scan is the backstop (exits arrive by pidfd): every `interval`, but much sooner while a
    program we launched has not appeared yet, so a start is confirmed within milliseconds.
    """
    due = last_scan + interval
    for state in states:
        if state.phase == Phase.STARTING and state.instance is None:
            poll = START_POLL_FAST if last_scan - state.since < FAST_FOR else START_POLL_SLOW
            due = min(due, last_scan + poll)
        elif state.phase == Phase.BACKOFF and state.respawner is not None:  # its launcher's
            poll = START_POLL_FAST if last_scan - state.since < FAST_FOR else START_POLL_SLOW
            due = min(due, last_scan + poll)  # successor: adopted soon, never doubled
    return due
