"""Cron arithmetic in a time zone, held to what systemd's own calendar code says."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from zelador.jobs.schedule import ScheduleError, next_after, on_calendar, parse_cron

UTC = timezone.utc


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def ours(expression: str, zone: str, base: float, count: int) -> list[float]:
    cron, out, moment = parse_cron(expression, zone), [], base
    for _ in range(count):
        nxt = next_after(cron, moment)
        assert nxt is not None
        out.append(nxt)
        moment = nxt
    return out


def systemds(calendar: str, base: float, count: int) -> list[float]:
    base_text = datetime.fromtimestamp(base, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = subprocess.run(["systemd-analyze", "calendar", f"--iterations={count}",
                           f"--base-time={base_text}", calendar], capture_output=True, text=True,
                          check=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"}).stdout
    found = elapses(text)
    assert len(found) == count, f"read {len(found)} of {count} elapses from:\n{text}"
    return found


def elapses(text: str) -> list[float]:
    """The moments `systemd-analyze calendar` printed: systemd 247-252 say `Iter. #2:`,
    systemd 257 (Debian 13) says `Iteration #2:`."""
    found = re.findall(r"(?:Next elapse|Iter(?:\.|ation) #\d+): \w+ (\S+ \S+) UTC", text)
    return [at(stamp) for stamp in found]


def test_reads_systemd_analyze_calendar_of_debian_11_12_and_13() -> None:
    old = ("  Original form: *-*-* 02:30:00\nNormalized form: *-*-* 02:30:00\n"
           "    Next elapse: Mon 2026-11-30 02:30:00 UTC\n       From now: 9h left\n"
           "       Iter. #2: Tue 2026-12-01 02:30:00 UTC\n       From now: 1 day 9h left\n")
    new = ("  Original form: *-*-* 02:30:00\nNormalized form: *-*-* 02:30:00\n"
           "    Next elapse: Mon 2026-11-30 02:30:00 UTC\n       From now: 9h left\n"
           "   Iteration #2: Tue 2026-12-01 02:30:00 UTC\n       From now: 1 day 9h left\n")
    want = [at("2026-11-30 02:30:00"), at("2026-12-01 02:30:00")]
    assert elapses(old) == elapses(new) == want


def test_prague_spring_forward_night_skips_the_missing_half_hour() -> None:
    got = ours("30 2 * * *", "Europe/Prague", at("2026-03-28 12:00"), 2)
    assert got == [at("2026-03-30 00:30"), at("2026-03-31 00:30")]  # no run on 03-29


def test_prague_fall_back_night_runs_the_repeated_half_hour_once() -> None:
    got = ours("30 2 * * *", "Europe/Prague", at("2026-10-24 12:00"), 2)
    assert got == [at("2026-10-25 00:30"), at("2026-10-26 01:30")]


def test_hourly_across_both_prague_nights() -> None:
    spring = ours("0 * * * *", "Europe/Prague", at("2026-03-28 23:30"), 3)
    assert spring == [at("2026-03-29 00:00"), at("2026-03-29 01:00"), at("2026-03-29 02:00")]
    autumn = ours("0 * * * *", "Europe/Prague", at("2026-10-24 23:30"), 3)
    assert autumn == [at("2026-10-25 00:00"), at("2026-10-25 02:00"), at("2026-10-25 03:00")]


def test_next_after_a_moment_inside_the_repeated_hour() -> None:
    cron = parse_cron("45 2 * * *", "Europe/Prague")
    second_pass = at("2026-10-25 01:10")  # 02:10 CET, the second 02:10 of the night
    assert next_after(cron, second_pass) == at("2026-10-26 01:45")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("expression", ["30 2 * * *", "0 * * * *", "*/15 8-18 * * 1-5",
                                        "0 0 1 * *", "5 4 * * sun", "0 22 * * 1,3,5",
                                        "10 3 1,15 1-6 *", "@hourly"])
@pytest.mark.parametrize("base", ["2026-03-27 12:00", "2026-10-23 12:00"])
def test_agrees_with_systemd_calendar_on_both_dst_nights(expression: str, base: str) -> None:
    cron = parse_cron(expression, "Europe/Prague")
    assert ours(expression, "Europe/Prague", at(base), 30) == systemds(on_calendar(cron), at(base), 30)


def test_on_calendar_words() -> None:
    assert on_calendar(parse_cron("30 2 * * *", "America/Fortaleza")) == \
        "*-*-* 02:30:00 America/Fortaleza"
    assert on_calendar(parse_cron("*/15 8-18 * * 1-5")) == \
        "Mon..Fri *-*-* 08..18:00,15,30,45:00"
    assert on_calendar(parse_cron("0 0 * * 0,6")) == "Sat,Sun *-*-* 00:00:00"


@pytest.mark.parametrize(("expression", "words"), [
    ("30 2 * *", "5 fields"), ("61 * * * *", "out of range"), ("0 0 L * *", "not standard"),
    ("0 12 * * 5#2", "not standard"), ("0 0 30 2 *", "never happens")])
def test_bad_cron_is_refused_with_a_reason(expression: str, words: str) -> None:
    with pytest.raises(ScheduleError, match=words):
        parse_cron(expression)


def test_day_of_month_or_weekday_cannot_be_a_timer() -> None:
    with pytest.raises(ScheduleError, match="split it into two jobs"):
        on_calendar(parse_cron("0 0 1 * 1"))


def test_unknown_zone() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Europe/Praha'"):
        parse_cron("0 0 * * *", "Europe/Praha")
