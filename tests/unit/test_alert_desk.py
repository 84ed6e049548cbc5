"""The loop's side of alerts, with a fake clock: notices routed and handed over at once,
reminders and the end of flapping from loop timers, duplicates closed after a turn."""

from __future__ import annotations

from zelador.alerts.incidents import Notice
from zelador.config.model import Alerts, Channel, Rule, Webhook
from zelador.events import event
from zelador.runtime.alerts import AlertDesk
from zelador.runtime.loop import Loop

from .test_supervisor import FakeClock


class Wall:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def desk(**settings: object) -> tuple[AlertDesk, Loop, FakeClock, Wall, list[tuple[Notice, tuple[str, ...]]]]:
    clock, wall = FakeClock(), Wall()
    loop = Loop(clock)
    handed: list[tuple[Notice, tuple[str, ...]]] = []
    alerts = Alerts(channels=(Channel("hook", Webhook("http://127.0.0.1:1/")),
                              Channel("mail", Webhook("http://127.0.0.1:2/"))),
                    **settings)  # type: ignore[arg-type]
    return AlertDesk(alerts, loop, handed.extend, wall=wall), loop, clock, wall, handed


def test_a_problem_is_routed_and_handed_over_at_once() -> None:
    d, loop, *_ , handed = desk(rules=(Rule(events=("gave_up",), channels=("mail",)),))
    d.emit(event("gave_up", "comunicador: giving up", subject="comunicador"))
    assert [(n.phase, chans) for n, chans in handed] == [("problem", ("mail",))]
    loop.close()


def test_a_reminder_comes_from_a_loop_timer() -> None:
    d, loop, clock, wall, handed = desk(remind_every=3600.0)
    d.emit(event("gave_up", "comunicador: giving up", subject="comunicador"))
    for _ in range(61):  # the timer wakes at least once a minute (the wall clock may step)
        clock.jump(60)
        wall.now += 60
        loop.turn(max_wait=0)
    assert [n.phase for n, _ in handed] == ["problem", "reminder"]
    loop.close()


def test_flapping_ends_after_a_quiet_window_on_the_loop_clock() -> None:
    d, loop, clock, _, handed = desk(flapping=2, flapping_window=600.0)
    for _ in range(2):
        d.emit(event("exited", "comunicador: pid 1 exited", subject="comunicador"))
        clock.jump(10)
    assert [n.incident.problem for n, _ in handed] == ["flapping"]
    for _ in range(11):
        clock.jump(60)
        loop.turn(max_wait=0)
    assert [(n.phase, n.incident.problem) for n, _ in handed][-1] == ("recovery", "flapping")
    loop.close()


def test_a_duplicate_closes_when_one_instance_runs_again() -> None:
    d, loop, *_ , handed = desk()
    d.emit(event("duplicate", "comunicador: a second instance", subject="comunicador"))
    d.after_turn({"comunicador": True})
    assert len(handed) == 1
    d.after_turn({"comunicador": False})
    assert [n.phase for n, _ in handed] == ["problem", "recovery"]
    assert not d.has_duplicates_open()
    loop.close()


def test_events_about_zelador_itself_are_not_incidents() -> None:
    d, loop, *_ , handed = desk()
    d.emit(event("degraded", "no journald"))
    assert handed == []
    loop.close()
