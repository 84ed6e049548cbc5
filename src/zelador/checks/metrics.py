"""The figures rules can be written on, their units, and how values read (pure).

Shared by the config reader (which unit a threshold needs), the samplers (what to measure) and
the messages (`memory 612.4 MB > 500 MB`).
"""

from __future__ import annotations

import re

from zelador.config.durations import format_duration, parse_duration

PERCENT, BYTES, COUNT, SECONDS, LOAD = "percent", "bytes", "count", "seconds", "load"

PROGRAM_METRICS: dict[str, str] = {
    "cpu": PERCENT,  # of one core, over the last sampling interval
    "memory": BYTES,  # RSS
    "pss": BYTES,  # proportional set size (shared pages split among their users)
    "threads": COUNT,
    "fds": COUNT,
    "children": COUNT,
    "uptime": SECONDS,
}

SYSTEM_METRICS: dict[str, str] = {
    "memory": PERCENT,  # used, of total
    "swap": PERCENT,
    "load": LOAD,
    "cpu": PERCENT,  # all cores, over the last sampling interval
    "disk": PERCENT,  # space used on the mount point
    "inodes": PERCENT,
    "processes": COUNT,
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_FACTORS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
            "t": 1e12, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
            "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_value(unit: str, value: object) -> float:
    """A threshold in `unit`; ValueError with a message fit for a config error."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    text = str(value).strip()
    if unit == PERCENT:
        number = text[:-1] if text.endswith("%") else text
        try:
            percent = float(number)
        except ValueError:
            raise ValueError(f"{text!r} is not a percentage (e.g. 90%)") from None
        if not 0 <= percent <= 100 * 1024:  # a process's cpu may exceed 100% (threads)
            raise ValueError(f"{text!r} is out of range")
        return percent
    if unit == BYTES:
        found = _SIZE.match(text)
        if found is None or found.group(2).lower() not in _FACTORS:
            raise ValueError(f"{text!r} is not a size (e.g. 500MB, 2GiB)")
        if found.group(2) == "" and float(found.group(1)) != 0:
            raise ValueError(f"{text!r}: give a unit (e.g. 500MB, 2GiB)")
        return float(found.group(1)) * _FACTORS[found.group(2).lower()]
    if unit == SECONDS:
        return parse_duration(text)
    try:
        figure = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if figure < 0 or (unit == COUNT and figure != int(figure)):
        raise ValueError(f"{text!r} is not a whole number of at least 0")
    return figure


def show(unit: str, value: float) -> str:
    """A value the way people read it: `91.2%`, `612.4 MB`, `3`, `1h 2m`, `2.05`."""
    if unit == PERCENT:
        return f"{value:.1f}%"
    if unit == BYTES:
        for size, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit == SECONDS:
        return format_duration(value)
    if unit == COUNT:
        return f"{value:.0f}"
    return f"{value:.2f}"
