"""Which unit zelador runs in (its scopes are ordered Before= it, so systemd stops it first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zelador.systemd.shutdown import own_unit, scopes_before


def test_own_unit_is_read_from_the_cgroup_when_systemd_started_us(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/zelador.service\n")
    monkeypatch.setenv("INVOCATION_ID", "0123")
    assert own_unit(str(cgroup)) == "zelador.service"
    cgroup.write_text("12:pids:/system.slice/pos@1.service\n0::/system.slice/pos@1.service\n")
    assert own_unit(str(cgroup)) == "pos@1.service"
    cgroup.write_text("0::/user.slice/user-0.slice/session-3.scope\n")
    assert own_unit(str(cgroup)) == ""  # a login shell: no unit to be stopped before
    monkeypatch.delenv("INVOCATION_ID")
    cgroup.write_text("0::/system.slice/zelador.service\n")
    assert own_unit(str(cgroup)) == ""  # not started by systemd: no scope ordering
    assert own_unit(str(tmp_path / "missing")) == ""


def test_what_the_check_starts_is_stopped_after_the_daemon() -> None:
    assert scopes_before("zelador-check.service") == "zelador.service"
    assert scopes_before("pos-check.service") == "pos.service"
    assert scopes_before("zelador.service") == "zelador.service"
    assert scopes_before("") == ""
