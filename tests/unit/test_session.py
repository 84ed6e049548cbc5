"""Picking the desktop session for `user: session` (recorded logind state files, in the format
of /run/systemd/seats/seat0 and /run/systemd/sessions/ID on a Debian terminal with lightdm), its
environment, and the engine's WAITING transitions."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from zelador.config.model import Match, Program
from zelador.config.reader import parse_config
from zelador.errors import ConfigError
from zelador.programs.engine import step
from zelador.programs.session import Session, parse_state, pick, session_environment
from zelador.programs.states import (
    Exited,
    Instance,
    KillScript,
    Launch,
    Observed,
    PeerRestarted,
    Phase,
    ProgramState,
    Reloaded,
    SessionChanged,
    StopInstance,
    Tick,
)

RECORDED = pathlib.Path(__file__).parent / "logind"
MONITOR = Program("monitor", Match(name="Monitor"), ("/opt/sefaz/cco/bin/runcco-mon.sh",),
                  user="session", part_of=("comunicador",))
A = Instance(100, 1000.0)


def recorded(*names: str) -> dict[str, dict[str, str]]:
    return {name: parse_state((RECORDED / name).read_text()) for name in names}


def seat(active: str) -> dict[str, str]:
    fields = parse_state((RECORDED / "seat0").read_text())
    fields["ACTIVE"] = active
    return fields


def test_seat0s_active_x11_session_is_picked_with_its_user_and_display():
    found = pick(seat("3"), recorded("3", "c1", "5"))
    assert found == Session("3", 1001, "caixa", "x11", ":0", 1234, "seat0")


def test_a_text_console_active_on_seat0_means_waiting_with_the_reason():
    found = pick(seat("5"), recorded("3", "c1", "5"))
    assert isinstance(found, str) and "5, user root" in found and "tty" in found


def test_the_greeter_is_nobodys_desktop():
    found = pick(seat("c1"), recorded("c1"))
    assert isinstance(found, str) and "not graphical" in found


def test_without_seat0_the_one_active_graphical_session_is_used():
    assert isinstance(pick(None, recorded("3", "5")), Session)
    assert pick(None, recorded("5")) == "nobody is logged in to a graphical session"


def test_a_closing_session_is_not_picked():
    sessions = recorded("3")
    sessions["3"]["STATE"] = "closing"
    assert isinstance(pick(seat("3"), sessions), str)


def test_environment_takes_xauthority_and_bus_from_the_session_and_display_from_logind():
    session = Session("3", 1001, "caixa", "x11", ":0", 1234, "seat0")
    leader = {"XAUTHORITY": "/home/caixa/.Xauthority", "DISPLAY": ":9", "PATH": "/evil",
              "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1001/bus"}
    env = session_environment(session, leader, "/home/caixa", runtime_dir_exists=True)
    assert env["DISPLAY"] == ":0" and env["XAUTHORITY"] == "/home/caixa/.Xauthority"
    assert env["XDG_RUNTIME_DIR"] == "/run/user/1001" and env["XDG_SESSION_ID"] == "3"
    assert "PATH" not in env  # only what a GUI program needs is taken from the session
    bare = session_environment(session, {}, "/home/caixa", runtime_dir_exists=False)
    assert bare["XAUTHORITY"] == "/home/caixa/.Xauthority" and "XDG_RUNTIME_DIR" not in bare


def waiting() -> ProgramState:
    state, actions = step(MONITOR, ProgramState("monitor"), SessionChanged("", "nobody"), 0.0)
    state, actions = step(MONITOR, state, Observed(None), 0.1)
    assert state.phase == Phase.WAITING and [a.kind for a in actions] == ["waiting"]
    return state


def test_unknown_to_waiting_without_a_session_and_nothing_counted():
    state = waiting()
    assert state.failures == 0 and state.attempts == 0 and "nobody" in state.reason
    assert step(MONITOR, state, Observed(A), 1.0)[0].instance is None  # not ours to adopt


def test_waiting_gives_the_autostart_its_grace_then_looks_then_starts():
    state, actions = step(MONITOR, waiting(), SessionChanged("3"), 5.0)
    assert state.phase == Phase.WAITING and state.deadline == 10.0 and actions == []
    assert "giving its autostart 5s" in state.reason
    assert step(MONITOR, state, Observed(None), 6.0) == (state, [])  # nothing launched meanwhile
    assert step(MONITOR, state, Tick(), 9.9) == (state, [])
    state, actions = step(MONITOR, state, Tick(), 10.0)
    assert state.phase == Phase.UNKNOWN and actions == []
    state, actions = step(MONITOR, state, Observed(None), 10.01)
    assert state.phase == Phase.STARTING and Launch("monitor") in actions


def test_waiting_adopts_what_the_sessions_autostart_started_during_the_grace():
    state, _ = step(MONITOR, waiting(), SessionChanged("3"), 5.0)
    state, _ = step(MONITOR, state, Tick(), 10.0)
    state, actions = step(MONITOR, state, Observed(A), 10.01)
    assert state.phase == Phase.RUNNING and state.instance == A
    assert not any(isinstance(a, Launch) for a in actions)


def test_without_a_grace_it_looks_at_once_and_a_logout_in_the_grace_waits_again():
    eager = dataclasses.replace(MONITOR, session_grace=0.0)
    state, actions = step(eager, waiting(), SessionChanged("3"), 5.0)
    assert state.phase == Phase.UNKNOWN and actions == []
    state, _ = step(MONITOR, waiting(), SessionChanged("3"), 5.0)
    state, _ = step(MONITOR, state, SessionChanged("", "logged out"), 6.0)
    assert state.phase == Phase.WAITING and state.deadline is None


def running_in(session: str) -> ProgramState:
    return ProgramState("monitor", Phase.RUNNING, instance=A, desktop=session)


def test_running_to_waiting_on_logout_without_a_restart():
    state, actions = step(MONITOR, running_in("3"), SessionChanged("", "nobody is logged in"), 9.0)
    assert state.phase == Phase.WAITING and state.instance is None and A in state.dead
    assert not any(isinstance(a, Launch) for a in actions)
    state, actions = step(MONITOR, state, Exited(A, exit_signal=1), 9.1)  # it dies with the X
    assert state.phase == Phase.WAITING and actions == [] and state.failures == 0


def test_exit_without_a_session_waits_instead_of_backing_off():
    state = ProgramState("monitor", Phase.RUNNING, instance=A, desktop="", since=0.0)
    state, actions = step(MONITOR, state, Exited(A), 1.0)
    assert state.phase == Phase.WAITING and not any(isinstance(a, Launch) for a in actions)


def test_running_moves_to_the_new_active_session():
    state, actions = step(MONITOR, running_in("3"), SessionChanged("7"), 9.0)
    assert state.phase == Phase.STOPPING and state.then_start and StopInstance(
        "monitor", A, False, tree=True) in actions


def test_starting_to_waiting_kills_the_start_when_the_session_ends():
    state = ProgramState("monitor", Phase.STARTING, desktop="3", script_running=True, deadline=30)
    state, actions = step(MONITOR, state, SessionChanged("", "gone"), 1.0)
    assert state.phase == Phase.WAITING and KillScript("monitor") in actions


def test_part_of_restart_in_the_session_happens_once():
    state, actions = step(MONITOR, running_in("3"), PeerRestarted("comunicador"), 1.0)
    assert state.phase == Phase.STOPPING and state.then_start
    state, actions = step(MONITOR, state, Exited(A), 1.1)
    assert state.phase == Phase.STARTING and actions.count(Launch("monitor")) == 1


def test_user_session_cannot_be_combined_with_group():
    text = """programs:
  monitor:
    match: {name: Monitor}
    start: /bin/true
    user: session
    group: adm
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "z.yaml", check_files=False)
    assert str(caught.value).startswith("z.yaml:6: programs.monitor.group: cannot be combined")
    ok = parse_config(text.replace("    group: adm\n", ""), "z.yaml")
    assert ok.programs[0].user == "session"


def test_waiting_program_no_longer_session_after_reload_looks_and_starts():
    plain = Program("monitor", Match(name="Monitor"), ("/opt/sefaz/cco/bin/runcco-mon.sh",))
    state, _ = step(plain, waiting(), Reloaded(), 3.0)
    assert state.phase == Phase.UNKNOWN
    state, actions = step(plain, state, Observed(None), 3.1)
    assert state.phase == Phase.STARTING and Launch("monitor") in actions
