"""The incident engine: one transition per test, then the routing rules."""

from __future__ import annotations

from zelador.alerts.incidents import PROBLEM, RECOVERY, REMINDER, Incident, Incidents, route
from zelador.config.model import Alerts, Channel, Rule, Webhook
from zelador.events import event


def prog(kind: str, name: str = "comunicador", message: str = "") -> object:
    return event(kind, f"{name}: {message or kind}", subject=name)


def job(kind: str, name: str = "backup") -> object:
    return event(kind, f"{name}: {kind}", subject=name, subject_kind="job")


def settings(**kw: object) -> Alerts:
    chans = (Channel("hook", Webhook("http://127.0.0.1:1/")),
             Channel("phone", Webhook("http://127.0.0.1:2/")))
    return Alerts(channels=chans, **kw)  # type: ignore[arg-type]


def test_gave_up_opens_a_problem_once():
    inc = Incidents(settings())
    first = inc.observe(prog("gave_up"), 100.0, 1.0)
    again = inc.observe(prog("gave_up", message="giving up again"), 200.0, 2.0)
    assert [(n.phase, n.incident.problem) for n in first] == [(PROBLEM, "gave_up")]
    assert again == []
    assert inc.open["program/comunicador/gave_up"].count == 2
    assert inc.open["program/comunicador/gave_up"].latest == "comunicador: giving up again"


def test_stable_closes_gave_up_and_start_failed_with_one_recovery_each():
    inc = Incidents(settings())
    inc.observe(prog("gave_up"), 100.0, 1.0)
    inc.observe(prog("start_failed"), 101.0, 1.5)
    assert inc.observe(prog("started"), 150.0, 50.0) == []  # a start alone is no recovery
    notices = inc.observe(prog("stable"), 160.0, 60.0)
    assert sorted((n.phase, n.incident.problem) for n in notices) == [
        (RECOVERY, "gave_up"), (RECOVERY, "start_failed")]
    assert inc.open == {}


def test_started_without_a_problem_says_nothing():
    assert Incidents(settings()).observe(prog("started"), 1.0, 1.0) == []


def test_job_ok_closes_failed_timeout_and_missed():
    inc = Incidents(settings())
    for kind in ("job_failed", "job_timeout", "job_missed"):
        inc.observe(job(kind), 10.0, 1.0)
    assert len(inc.open) == 3
    assert len(inc.observe(job("job_ok"), 20.0, 2.0)) == 3
    assert inc.open == {}


def test_same_name_program_and_job_are_different_incidents():
    inc = Incidents(settings())
    inc.observe(prog("gave_up", name="x"), 1.0, 1.0)
    inc.observe(job("job_failed", name="x"), 1.0, 1.0)
    assert inc.observe(job("job_ok", name="x"), 2.0, 2.0)[0].incident.subject_kind == "job"
    assert list(inc.open) == ["program/x/gave_up"]


def test_flapping_opens_at_the_nth_exit_within_the_window():
    inc = Incidents(settings(flapping=3, flapping_window=600.0))
    assert inc.observe(prog("exited"), 0.0, 0.0) == []
    assert inc.observe(prog("exited"), 180.0, 180.0) == []
    notices = inc.observe(prog("exited"), 360.0, 360.0)
    assert [(n.phase, n.incident.problem) for n in notices] == [(PROBLEM, "flapping")]
    assert "exited 3 times within 6m" in notices[0].message


def test_exits_spread_wider_than_the_window_are_not_flapping():
    inc = Incidents(settings(flapping=3, flapping_window=600.0))
    for t in (0.0, 400.0, 800.0, 1200.0):
        assert inc.observe(prog("exited"), t, t) == []


def test_flapping_closes_after_a_quiet_window_by_the_monotonic_clock():
    inc = Incidents(settings(flapping=2, flapping_window=600.0))
    inc.observe(prog("exited"), 0.0, 0.0)
    inc.observe(prog("exited"), 10.0, 10.0)
    inc.observe(prog("exited"), 300.0, 300.0)  # still flapping: the quiet window restarts
    assert inc.next_in(300.0, 300.0) == 600.0
    assert inc.tick(5000.0, 899.0) == []  # the wall clock jumped; the window did not pass
    notices = inc.tick(5001.0, 900.0)
    assert [(n.phase, n.incident.problem) for n in notices] == [(RECOVERY, "flapping")]


def test_reminders_every_remind_every_while_open():
    inc = Incidents(settings(remind_every=3600.0))
    inc.observe(prog("gave_up"), 1000.0, 0.0)
    assert inc.next_in(1000.0, 0.0) == 3600.0
    assert inc.tick(4599.0, 3599.0) == []
    notices = inc.tick(4600.0, 3600.0)
    assert [n.phase for n in notices] == [REMINDER]
    assert inc.next_in(4600.0, 3600.0) == 3600.0


def test_no_reminders_by_default():
    inc = Incidents(settings())
    inc.observe(prog("gave_up"), 1000.0, 0.0)
    assert inc.next_in(1e9, 0.0) is None


def test_restored_incident_recovers_after_restart():
    restored = Incident("program", "comunicador", "gave_up", 50.0, "comunicador: giving up")
    inc = Incidents(settings(), [restored])
    notices = inc.observe(prog("found"), 100.0, 1.0)
    assert [(n.phase, n.incident.opened) for n in notices] == [(RECOVERY, 50.0)]


def test_forget_closes_incidents_of_removed_subjects():
    inc = Incidents(settings())
    inc.observe(prog("gave_up", name="old"), 1.0, 1.0)
    inc.observe(prog("gave_up", name="kept"), 1.0, 1.0)
    notices = inc.forget({("program", "kept")}, 2.0)
    assert [n.incident.subject for n in notices] == ["old"]
    assert "no longer watched" in notices[0].message


def test_no_rules_route_everything_everywhere():
    inc = Incidents(settings())
    (notice,) = inc.observe(prog("gave_up"), 1.0, 1.0)
    assert route(notice, inc.settings) == ("hook", "phone")


def test_rules_pick_channels_by_subject_and_problem():
    rules = (Rule(programs=("comunicador",), events=("gave_up",), channels=("phone",)),
             Rule(jobs=("backup",), channels=("hook",), recoveries=False))
    inc = Incidents(settings(rules=rules))
    (gave_up,) = inc.observe(prog("gave_up"), 1.0, 1.0)
    (dup,) = inc.observe(prog("duplicate"), 1.0, 1.0)
    (failed,) = inc.observe(job("job_failed"), 1.0, 1.0)
    (ok,) = inc.observe(job("job_ok"), 2.0, 2.0)
    (back,) = inc.observe(prog("stable"), 2.0, 2.0)
    assert route(gave_up, inc.settings) == ("phone",)
    assert route(dup, inc.settings) == ()
    assert route(failed, inc.settings) == ("hook",)
    assert route(ok, inc.settings) == ()  # recoveries: false
    assert route(back, inc.settings) == ("phone",)


def test_a_rule_on_a_check_covers_its_items() -> None:
    rules = (Rule(checks=("miners",), channels=("phone",)),)
    inc = Incidents(settings(rules=rules))
    (stale,) = inc.observe(event("check_failed", "miners/rig-07: not seen for 15m",
                                 subject="miners/rig-07", subject_kind="check"), 1.0, 1.0)
    (other,) = inc.observe(event("check_failed", "disk_root: disk / 95%", subject="disk_root",
                                 subject_kind="check"), 1.0, 1.0)
    assert route(stale, inc.settings) == ("phone",) and route(other, inc.settings) == ()
    (back,) = inc.observe(event("check_recovered", "miners/rig-07: seen again",
                                subject="miners/rig-07", subject_kind="check"), 2.0, 2.0)
    assert back.phase == RECOVERY and route(back, inc.settings) == ("phone",)
