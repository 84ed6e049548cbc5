"""Check decisions (pure): for N cycles, X of Y, fails: N, recovery; seed 003's freshness rule;
threshold units."""

from __future__ import annotations

import pytest

from zelador.checks.freshness import ShapeError, ages
from zelador.checks.metrics import BYTES, PERCENT, SECONDS, parse_value, show
from zelador.checks.rules import (
    AGAIN,
    FAILED,
    RECOVERED,
    Streak,
    acted,
    cycles_of,
    judge_probe,
    judge_threshold,
)
from zelador.config.model import Freshness, Threshold


def feed(rule: Threshold, values: list[float], every: float = 10.0) -> list[str | None]:
    streak, out = Streak(), []
    for value in values:
        streak, verdict = judge_threshold(rule, streak, value, every, 0.0)
        out.append(verdict)
    return out


def test_above_for_three_cycles_fails_on_the_third_and_once() -> None:
    rule = Threshold("memory", "memory", 500.0, cycles=3, window=3)
    assert feed(rule, [600, 600, 600, 600, 600]) == [None, None, FAILED, None, None]


def test_a_dip_restarts_the_count() -> None:
    rule = Threshold("memory", "memory", 500.0, cycles=3, window=3)
    assert feed(rule, [600, 600, 400, 600, 600]) == [None] * 5


def test_x_of_y_cycles_tolerates_dips() -> None:
    rule = Threshold("cpu", "cpu", 80.0, cycles=3, window=5)
    assert feed(rule, [90, 10, 90, 10, 90]) == [None, None, None, None, FAILED]


def test_recovery_takes_as_many_clean_cycles_as_failing_did() -> None:
    rule = Threshold("memory", "memory", 500.0, cycles=2, window=2)
    assert feed(rule, [600, 600, 400, 600, 400, 400]) == [None, FAILED, None, None, None,
                                                          RECOVERED]


def test_one_cycle_fails_and_recovers_at_once() -> None:
    rule = Threshold("disk_root", "disk", 90.0)
    assert feed(rule, [95, 95, 50]) == [FAILED, None, RECOVERED]


def test_for_a_span_is_worked_out_from_the_sampling_interval() -> None:
    rule = Threshold("cpu", "cpu", 80.0, span=300.0)
    assert cycles_of(rule, 10.0) == (30, 30)
    assert cycles_of(rule, 7.0) == (43, 43)
    assert feed(rule, [90.0] * 30) == [None] * 29 + [FAILED]


def test_probe_fails_after_n_in_a_row_and_recovers_on_one_success() -> None:
    streak, out = Streak(), []
    for ok in (False, True, False, False, False, True):
        streak, verdict = judge_probe(streak, ok, 2, 0.0, "")
        out.append(verdict)
    assert out == [None, None, None, FAILED, None, RECOVERED]


def restarting(results: list[bool], fails: int) -> list[str | None]:
    """A probe with action restart: the runtime calls `acted` after each FAILED or AGAIN."""
    streak, out = Streak(), []
    for ok in results:
        streak, verdict = judge_probe(streak, ok, fails, 0.0, "", again=True)
        if verdict in (FAILED, AGAIN):
            streak = acted(streak)
        out.append(verdict)
    return out


def test_a_probe_still_failing_after_the_restart_acts_again_after_fails_more() -> None:
    assert restarting([False] * 7, 2) == [None, FAILED, None, AGAIN, None, AGAIN, None]
    assert restarting([False, False, False, True], 2) == [None, FAILED, None, RECOVERED]


def test_without_again_an_open_problem_is_acted_on_once() -> None:
    streak, out = Streak(), []
    for _ in range(6):
        streak, verdict = judge_probe(streak, False, 2, 0.0, "")
        out.append(verdict)
    assert out == [None, FAILED, None, None, None, None]


def test_a_threshold_after_the_restart_is_judged_on_the_new_instance_alone() -> None:
    rule = Threshold("memory", "memory", 500.0, cycles=2, window=3)
    streak, out = Streak(), []
    for value in (600, 600, 600, 400, 600, 600, 400, 400):
        streak, verdict = judge_threshold(rule, streak, value, 10.0, 0.0, again=True)
        if verdict in (FAILED, AGAIN):
            streak = acted(streak)
        out.append(verdict)
    # open on the 2nd; the restart's instance: 600 (1 of 2), 400, 600 -> 2 of 3 again;
    # then two clean samples in a row close it
    assert out == [None, FAILED, None, None, AGAIN, None, None, RECOVERED]


@pytest.mark.parametrize(("unit", "text", "value"), [
    (BYTES, "500MB", 500e6), (BYTES, "2GiB", 2 * 2**30), (BYTES, "512 kB", 512e3),
    (PERCENT, "90%", 90.0), (PERCENT, 95, 95.0), (SECONDS, "7d", 7 * 86400.0)])
def test_threshold_units(unit: str, text: object, value: float) -> None:
    assert parse_value(unit, text) == value


@pytest.mark.parametrize(("unit", "text", "error"), [
    (BYTES, "500", "give a unit"), (BYTES, "500 parsecs", "not a size"),
    (PERCENT, "ninety", "not a percentage")])
def test_bad_threshold_units(unit: str, text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_value(unit, text)


def test_values_read_like_people_write_them() -> None:
    assert show(BYTES, 612.4e6) == "612.4 MB" and show(PERCENT, 91.23) == "91.2%"


RULE = Freshness(("data", "workers"), "name", "last_seen", stale_after=600.0, ignore_after=8 * 3600.0)
NOW = 1_800_000_000.0


def test_seed_003_stale_between_ten_minutes_and_eight_hours() -> None:
    doc = {"data": {"workers": [
        {"name": "rig-01", "last_seen": NOW - 60},
        {"name": "rig-02", "last_seen": NOW - 1200},
        {"name": "rig-03", "last_seen": NOW - 9 * 3600},
        {"name": "rig-04", "last_seen": "2027-01-15T08:00:00Z"},
        {"name": "rig-05", "last_seen": (NOW - 30) * 1000}]}}  # milliseconds
    got = ages(doc, RULE, NOW)
    assert set(got.fresh) == {"rig-01", "rig-04", "rig-05"}
    assert set(got.stale) == {"rig-02"} and set(got.ignored) == {"rig-03"}


def test_items_keyed_by_name_in_an_object() -> None:
    doc = {"data": {"workers": {"rig-01": {"last_seen": NOW - 1200}}}}
    assert set(ages(doc, Freshness(("data", "workers"), "name", "last_seen"), NOW).stale) == \
        {"rig-01"}


@pytest.mark.parametrize(("doc", "error"), [
    ({"data": {}}, "no 'workers' in data"),
    ({"data": {"workers": 3}}, "is not a list"),
    ({"data": {"workers": [{"last_seen": 1}]}}, "has no 'name'"),
    ({"data": {"workers": [{"name": "a"}]}}, "has no 'last_seen'"),
    ({"data": {"workers": [{"name": "a", "last_seen": "yesterday"}]}}, "is not a time"),
    ([1, 2], "no 'data' in the top level")])
def test_a_json_not_shaped_as_the_rule_says_is_a_clear_error(doc: object, error: str) -> None:
    with pytest.raises(ShapeError, match=error):
        ages(doc, RULE, NOW)
