"""The health registry and where it shows: `zelador status` text and /metrics."""

from __future__ import annotations

import threading

from zelador.programs.view import render
from zelador.runtime.degraded import MAX_CHANGES, Health


def test_a_mark_from_many_threads_is_one_journal_line_and_a_count():
    health = Health()
    threads = [threading.Thread(target=lambda: [health.mark("history", "disk full")
                                                for _ in range(100)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [part] = health.status()
    assert part["count"] == 400
    assert [e.message for e in health.changes()] == ["history is degraded: disk full"]
    assert health.changes() == []


def test_a_new_reason_is_said_and_clear_says_recovered_once():
    health = Health()
    health.mark("outbox", "database is locked")
    health.mark("outbox", "disk full")
    health.clear("outbox")
    health.clear("outbox")
    assert [e.kind for e in health.changes()] == ["degraded", "degraded", "recovered"]
    assert health.status() == []


def test_the_journal_lines_held_between_turns_are_bounded():
    health = Health()
    for i in range(MAX_CHANGES + 50):
        health.mark(f"part{i}", "x")
    said = health.changes()
    assert len(said) == MAX_CHANGES + 1 and "50 more" in said[-1].message


def test_status_text_lists_degraded_parts():
    health = Health()
    health.mark("web snapshot", "KeyError: 'x' (at daemon.py:10)")
    text = render({"pid": 1, "config": "c", "summary": "", "programs": [],
                   "degraded": health.status()})
    assert "degraded: web snapshot: KeyError: 'x' (at daemon.py:10) (1 time(s))" in text


def test_metrics_have_a_degraded_gauge_per_part():
    from zelador.web.metrics import Metrics

    health = Health()
    health.mark("history", "disk full")
    text = Metrics().render({"degraded": health.status(), "errors": 3}).decode()
    assert 'zelador_degraded{part="history"} 1.0' in text
    assert "zelador_callback_errors_total 3.0" in text


def test_a_part_that_flaps_the_same_way_is_said_once_a_minute_at_most():
    health = Health()
    for _ in range(100):
        health.mark("control", "RecursionError (at decoder.py:353)")
        health.clear("control")
    assert [e.kind for e in health.changes()] == ["degraded", "recovered"]
    health.mark("control", "another reason")
    assert [e.kind for e in health.changes()] == ["degraded"]
