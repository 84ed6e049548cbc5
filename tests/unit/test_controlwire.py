"""Control requests are measured before they are believed (runtime/controlwire.py)."""

from __future__ import annotations

import pytest

from zelador.runtime.controlwire import MAX_REQUEST, BadRequest, depth, encode, parse


def refused(line: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        parse(line)
    return str(caught.value)


def test_depth_is_counted_without_recursion_and_ignores_brackets_in_strings() -> None:
    assert depth(b"[" * 200000) == 200000
    assert depth(b'{"a": "[[[[{{{{", "b": [1, [2]]}') == 3
    assert depth(b'{"a": "\\"[[["}') == 1
    assert depth(b"") == 0


def test_deep_nesting_is_refused_before_json_loads() -> None:
    assert refused(b"[" * 40000 + b"]" * 40000) == "the request nests 40000 deep (at most 8)"


def test_size_utf8_and_shape() -> None:
    assert refused(b"x" * (MAX_REQUEST + 1)) == "the request is larger than 128 kB"
    assert refused(b'{"cmd": "status", "x": "\xff"}') == "the request is not UTF-8 (byte 24)"
    assert refused(b"") == "empty request"
    assert refused(b"[1]") == "the request is a JSON list, not an object"
    assert refused(b'{"cmd": "shutdown"}') == ("unknown request 'shutdown' (try: status, checks, "
                                               "jobs, start, stop, restart, report, reload)")


def test_integers_are_bounded_in_digits_and_in_range() -> None:
    assert refused(b'{"cmd": "report", "job": "j", "verb": "fail", "exit_status": '
                   + b"9" * 5000 + b"}") == "a number of 5000 digits is out of range (at most 20 digits)"
    assert refused(b'{"cmd": "report", "job": "j", "verb": "fail", '
                   b'"exit_status": 99999999999999999999}') == (
        "report: exit_status 99999999999999999999 is out of range (0 to 255)")
    assert refused(b'{"cmd": "report", "job": "j", "verb": "fail", "exit_status": true}') == (
        "report: exit_status is bool, not an integer")
    assert refused(b'{"cmd": "report", "job": "j", "verb": "ok", "duration": 1e999}') == (
        "the number 1e999 is out of range")
    assert refused(b'{"cmd": "report", "job": "j", "verb": "ok", "at": NaN}') == (
        "NaN is not a number zelador takes")


def test_fields_are_those_of_the_verb() -> None:
    assert refused(b'{"cmd": "restart"}') == "restart: program is missing"
    assert refused(b'{"cmd": "stop", "program": ["a"]}') == "stop: program is list, not a string"
    assert refused(b'{"cmd": "stop", "program": "a", "_by": "uid 0"}') == (
        "stop: unknown field '_by' (takes: program)")
    assert parse(b'{"cmd": "status", "program": null}') == {"cmd": "status", "program": None}
    report = (b'{"cmd": "report", "job": "backup", "verb": "fail", "exit_status": 3, '
              b'"duration": 1.5, "at": 1700000000.5, "run": "r1", "source": "zelador exec", '
              b'"message": "m", "output": "o"}')
    assert parse(report)["exit_status"] == 3


def test_a_reply_with_nan_is_still_one_json_line() -> None:
    assert encode({"raw": float("nan"), "x": [float("inf"), 1.0]}) == (
        b'{"raw": null, "x": [null, 1.0]}\n')
