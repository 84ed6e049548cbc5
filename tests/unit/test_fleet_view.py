"""`zelador fleet`'s verdicts and table (pure)."""

from __future__ import annotations

from zelador.cli.fleet import render, verdict


def test_up_down_missing() -> None:
    assert verdict({"name": "a", "connected": True, "down": [], "problems": []}) == "UP"
    assert verdict({"name": "b", "connected": True, "down": ["comunicador"]}) == "DOWN"
    assert verdict({"name": "c", "connected": True, "down": [],
                    "problems": ["backup failed"]}) == "DOWN"
    assert verdict({"name": "d", "connected": False}) == "MISSING"


def test_the_table_names_what_is_down_and_counts() -> None:
    terminals = [{"name": "pos-1", "connected": True, "summary": "2/2 up", "down": [],
                  "problems": []},
                 {"name": "pos-2", "connected": True, "summary": "1/2 up",
                  "down": ["comunicador"], "problems": ["comunicador gave_up"]},
                 {"name": "pos-3", "connected": False}]
    text = render(terminals, down_only=False)
    assert "comunicador down, comunicador gave_up" in text
    assert text.splitlines()[-1] == "3 terminals: 1 up, 1 down, 1 missing"
    assert "pos-1" not in render(terminals, down_only=True)


def test_config_not_lists_the_terminals_running_another_config() -> None:
    from zelador.cli.fleet import config_differs

    new, old = "ab12" * 16, "cd34" * 16
    terminals = [{"name": "pos-1", "connected": True, "config_sha256": new},
                 {"name": "pos-2", "connected": True, "config_sha256": old},
                 {"name": "pos-3", "connected": False}]  # never said: not known to run `new`
    assert [t["name"] for t in config_differs(terminals, new)] == ["pos-2", "pos-3"]
    assert [t["name"] for t in config_differs(terminals, new[:12].upper())] == ["pos-2", "pos-3"]
    text = render(config_differs(terminals, new), down_only=False)
    assert f"config {old[:12]}" in text and "config unknown" in text
