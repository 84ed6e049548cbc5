"""Time spans in systemd's words: `500ms`, `10s`, `5m`, `1h 30m`, or a bare number of seconds."""

from __future__ import annotations

import re

_UNITS = {
    "us": 1e-6, "usec": 1e-6,
    "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_duration(text: str | int | float) -> float:
    """Return the span in seconds, or raise ValueError with a message fit for a config error."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a time span (use e.g. 500ms, 10s, 5m)")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"{text!r} is negative")
        return float(text)
    spec = text.strip().lower()
    if not spec:
        raise ValueError("empty time span (use e.g. 500ms, 10s, 5m)")
    total, pos = 0.0, 0
    while pos < len(spec):
        part = _PART.match(spec, pos)
        if part is None or part.end() == pos:
            raise ValueError(f"{text!r} is not a time span (use e.g. 500ms, 10s, 5m)")
        number, unit = part.groups()
        if unit not in _UNITS and unit != "":
            raise ValueError(f"{text!r}: unknown unit {unit!r} (use ms, s, m, h, d)")
        total += float(number) * _UNITS.get(unit, 1.0)
        pos = part.end()
        while pos < len(spec) and spec[pos] == " ":
            pos += 1
    return total


def format_duration(seconds: float) -> str:
    """Render a span the short way systemd does: `1h 2m 3s`, `250ms`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or not parts:
        parts.append(f"{whole}s")
    return " ".join(parts)
