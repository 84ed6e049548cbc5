"""A control request read off the wire, bounded before it is believed.

A request is one line of JSON, an object. What reaches `json.loads` has been measured first: at
most MAX_REQUEST bytes, valid UTF-8, nested at most MAX_DEPTH deep (counted without recursion,
so `'[' * 40000` costs one pass, never a RecursionError). Inside, integers may have at most
MAX_DIGITS digits (a 100,000-digit number would otherwise cost seconds to convert), NaN and
Infinity are refused, and every key is checked against what the verb takes, with its type and
range. A request that fails any of this gets one line saying what is wrong, and nothing else
happens.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any, Union

MAX_REQUEST = 128 * 1024  # a `zelador exec` report carries up to 10 kB of output, JSON-escaped
MAX_DEPTH = 8  # the deepest request is an object of scalars: 1
MAX_DIGITS = 20
MAX_NAME = 256
LONGEST = 10 * 365 * 86400.0  # a duration longer than ten years is a mistake

READ_VERBS = ("status", "checks", "jobs")
PROGRAM_VERBS = ("start", "stop", "restart")
VERBS = (*READ_VERBS, *PROGRAM_VERBS, "report", "reload")

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [1 if b in b"[{" else -1 for b in range(256)]

Checker = Callable[[Any], Union[str, None]]  # 3.9: no `|` outside annotations


class BadRequest(ValueError):
    """The request cannot be carried out; the text says why, for the client."""


def _text(limit: int) -> Checker:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"is {type(value).__name__}, not a string"
        return f"is longer than {limit} characters" if len(value) > limit else None
    return check


def _number(low: float, high: float, integer: bool = False) -> Checker:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            return f"is {type(value).__name__}, not {'an integer' if integer else 'a number'}"
        if not low <= value <= high:
            return f"{value!r} is out of range ({low:g} to {high:g})"
        return None
    return check


_NAME = _text(MAX_NAME)
_ANY_TEXT = _text(MAX_REQUEST)
SCHEMA: dict[str, dict[str, Checker]] = {
    **{verb: {} for verb in READ_VERBS},
    "reload": {},  # `zelador reload`: read root's own config again (it changes nothing else)
    **{verb: {"program": _NAME} for verb in PROGRAM_VERBS},
    "report": {"job": _NAME, "verb": _text(16), "run": _NAME, "source": _NAME,
               "message": _ANY_TEXT, "output": _ANY_TEXT,
               "exit_status": _number(0, 255, integer=True),
               "duration": _number(0.0, LONGEST), "at": _number(0.0, 2.0 ** 33)},
}
REQUIRED = {verb: ("program",) for verb in PROGRAM_VERBS} | {"report": ("job", "verb")}


def depth(data: bytes) -> int:
    """How deep the JSON text nests, strings left out (a bracket inside a string is text)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise BadRequest(f"a number of {len(digits.lstrip('-'))} digits is out of range (at "
                         f"most {MAX_DIGITS} digits)")
    return int(digits)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"the number {text[:24]} is out of range")
    return value


def _constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a number zelador takes")


def parse(line: bytes) -> dict[str, Any]:
    """The request in `line` (one line, its newline left off), checked; BadRequest if not."""
    if len(line) > MAX_REQUEST:
        raise BadRequest(f"the request is larger than {MAX_REQUEST // 1024} kB")
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request is not UTF-8 (byte {exc.start})") from None
    if not line.strip():
        raise BadRequest("empty request")
    nested = depth(line)
    if nested > MAX_DEPTH:
        raise BadRequest(f"the request nests {nested} deep (at most {MAX_DEPTH})")
    try:
        request = json.loads(line, parse_int=_int, parse_float=_float,
                             parse_constant=_constant)
    except BadRequest:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: only if the count above lies
        raise BadRequest(f"the request is not JSON: {str(exc)[:80]}") from None
    if not isinstance(request, dict):
        raise BadRequest(f"the request is a JSON {type(request).__name__}, not an object")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or cmd not in SCHEMA:
        shown = repr(cmd)[:60] if isinstance(cmd, (str, int, float)) or cmd is None else \
            type(cmd).__name__
        raise BadRequest(f"unknown request {shown} (try: {', '.join(VERBS)})")
    takes = SCHEMA[cmd]
    for key, value in request.items():
        if key == "cmd":
            continue
        check = takes.get(key)
        if check is None:
            if cmd in READ_VERBS and value is None:  # old clients send "program": null
                continue
            raise BadRequest(f"{cmd}: unknown field {key[:40]!r} (takes: "
                             f"{', '.join(takes) or 'nothing'})")
        if value is None and key not in REQUIRED.get(cmd, ()):
            continue
        problem = check(value)
        if problem is not None:
            raise BadRequest(f"{cmd}: {key} {problem}")
    for key in REQUIRED.get(cmd, ()):
        if key not in request:
            raise BadRequest(f"{cmd}: {key} is missing")
    return request


def encode(answer: dict[str, Any]) -> bytes:
    """One reply line. A value JSON cannot say (a float NaN) is written as null, not an error."""
    try:
        return json.dumps(answer, allow_nan=False).encode() + b"\n"
    except ValueError:
        return json.dumps(_no_nan(answer)).encode() + b"\n"


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nan(v) for v in value]
    return value
