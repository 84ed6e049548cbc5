"""`zelador names [KIND...]`: the names a config gives, one per line (for scripts and Tab).

Read as plain YAML, not validated: completing `zelador restart co<Tab>` must work while the file
is being edited and holds an error elsewhere. Names that are not strings are left out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zelador.errors import EX_CONFIG, EX_OK, UsageError, ZeladorError

KINDS = ("programs", "jobs", "checks", "channels")


def names_in(data: object, kind: str) -> list[str]:
    """The `kind` names in a parsed config; checks as events name them (comunicador.health),
    as config.reader.check_names does from a validated config (a test holds the two equal)."""
    top = data if isinstance(data, dict) else {}

    def keys(value: object, skip: tuple[str, ...] = ()) -> list[str]:
        if not isinstance(value, dict):
            return []
        return [k for k in value if isinstance(k, str) and k not in skip]

    if kind == "programs":
        return keys(top.get("programs"))
    if kind == "jobs":
        return keys(top.get("jobs"))
    if kind == "channels":
        alerts = top.get("alerts")
        return keys(alerts.get("channels")) if isinstance(alerts, dict) else []
    out = keys(top.get("checks")) + keys(top.get("system"), ("every",))
    programs = top.get("programs")
    for name in keys(programs):
        program = programs[name] if isinstance(programs, dict) else None
        if isinstance(program, dict):
            if program.get("health") is not None:
                out.append(f"{name}.health")
            out += [f"{name}.{figure}" for figure in keys(program.get("resources"), ("every",))]
    return out


def cmd_names(args: argparse.Namespace) -> int:
    import yaml

    wrong = [kind for kind in args.kinds if kind not in KINDS]
    if wrong:
        raise UsageError(f"{wrong[0]!r} is not one of {', '.join(KINDS)}")
    from zelador.config.dropins import dropin_paths

    try:
        files = [args.config, *dropin_paths(args.config)]
    except ZeladorError:
        files = [args.config]
    found: list[Any] = []
    for path in files:  # the config, then its drop-ins; a drop-in that cannot be read adds none
        try:
            with open(path, encoding="utf-8") as stream:
                found.append(yaml.safe_load(stream))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            if path != args.config:
                continue
            reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
            print(f"zelador: error: {args.config}: {reason}", file=sys.stderr)
            return EX_CONFIG
    for kind in args.kinds or KINDS[:3]:
        for name in dict.fromkeys(n for data in found for n in names_in(data, kind)):
            print(name)
    return EX_OK


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    names = sub.add_parser("names", parents=[common],
                           help="the program, job, check or channel names in the config, one "
                                "per line (for scripts and Tab completion)")
    names.add_argument("kinds", nargs="*", metavar="KIND",  # no choices=: Python 3.11 refuses []
                       help="programs, jobs, checks, channels (default: the first three)")
    names.set_defaults(func=cmd_names)
