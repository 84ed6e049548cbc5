"""Seed 003's rule on a JSON answer (pure): which items went quiet.

An item is stale when its last-seen time is more than `stale_after` ago but less than
`ignore_after` ago (older than that it is gone, not broken: a miner retired, a terminal
replaced). Times are Unix seconds (milliseconds when that large) or ISO 8601 strings (a time
without a zone is UTC). A list that is not there, an item without its key, or a time that cannot
be read is a clear error, not a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from zelador.config.model import Freshness


class ShapeError(ValueError):
    """The JSON is not shaped as the rule says."""


@dataclass(frozen=True)
class Ages:
    stale: dict[str, float]  # item -> seconds since last seen
    fresh: dict[str, float]
    ignored: dict[str, float]


def items_at(document: Any, path: tuple[str, ...]) -> list[Any]:
    node = document
    for depth, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(path[:depth]) or "the top level"
            raise ShapeError(f"no {part!r} in {where}")
        node = node[part]
    if isinstance(node, dict):  # {"rig-07": {...}, ...}: the keys name the items
        return [dict(value, **{"\0name": key}) if isinstance(value, dict) else value
                for key, value in node.items()]
    if not isinstance(node, list):
        raise ShapeError(f"{'.'.join(path)} is not a list (it is {type(node).__name__})")
    return node


def seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(repr(value))
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return seconds(float(text))
        except ValueError:
            pass
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    raise ValueError(repr(value))


def ages(document: Any, rule: Freshness, now: float) -> Ages:
    stale: dict[str, float] = {}
    fresh: dict[str, float] = {}
    ignored: dict[str, float] = {}
    for index, item in enumerate(items_at(document, rule.items)):
        if not isinstance(item, dict):
            raise ShapeError(f"item {index} of {'.'.join(rule.items)} is not an object")
        name = item.get(rule.key, item.get("\0name"))
        if name is None or isinstance(name, (dict, list)):
            raise ShapeError(f"item {index} of {'.'.join(rule.items)} has no {rule.key!r}")
        if rule.time not in item:
            raise ShapeError(f"item {str(name)[:60]!r} has no {rule.time!r}")
        try:
            age = now - seconds(item[rule.time])
        except (ValueError, OverflowError, OSError):
            raise ShapeError(f"item {str(name)[:60]!r}: {rule.time} "
                             f"{str(item[rule.time])[:40]!r} is not a time") from None
        key = str(name)[:120]
        if age > rule.ignore_after:
            ignored[key] = age
        elif age > rule.stale_after:
            stale[key] = age
        else:
            fresh[key] = age
    return Ages(stale, fresh, ignored)
