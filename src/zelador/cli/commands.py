"""The subcommands and options, as the argument parser defines them (for the man page and Tab).

zelador(1) and the bash completion are rendered from this walk of `cli.main.parser()`, so a new
subcommand or option appears in both without anyone writing it twice.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

# Option values and positionals that complete from the config or the file system, by dest.
NAMES_OF = {"program": "programs", "job": "jobs", "channel": "channels",
            "name": "programs jobs checks"}
FILES = ("config", "socket")
DIRS = ("runtime_dir", "state_dir", "logs_dir", "output", "dir")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # ("-c", "--config"); () for a positional
    dest: str
    metavar: str  # "" for a switch
    help: str
    choices: tuple[str, ...] = ()
    many: bool = False  # a positional taking any number of words
    optional: bool = False  # a positional that may be left out

    @property
    def takes_value(self) -> bool:
        return bool(self.metavar)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]  # its own, without the common ones
    positionals: tuple[Option, ...]


def _option(action: argparse.Action) -> Option:
    metavar = action.metavar if isinstance(action.metavar, str) else None
    switch = bool(action.option_strings) and action.nargs == 0
    shown = "" if switch else (metavar or action.dest.upper())
    return Option(flags=tuple(action.option_strings), dest=action.dest, metavar=shown,
                  help=action.help or "", choices=tuple(str(c) for c in action.choices or ()),
                  many=action.nargs in ("*", "+"), optional=action.nargs in ("?", "*"))


def subparsers(top: argparse.ArgumentParser) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    return next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))


def walk(top: argparse.ArgumentParser, common: tuple[str, ...]) -> tuple[Command, ...]:
    """Every subcommand in the parser's order; options whose dest is in `common` left out."""
    sub = subparsers(top)
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    out = []
    for name, parser in sub.choices.items():
        actions = [a for a in parser._actions
                   if not isinstance(a, argparse._HelpAction) and a.dest not in common]
        out.append(Command(name=name, help=helps.get(name, ""),
                           options=tuple(_option(a) for a in actions if a.option_strings),
                           positionals=tuple(_option(a) for a in actions if not a.option_strings)))
    return tuple(out)


def common_options(top: argparse.ArgumentParser) -> tuple[Option, ...]:
    """The options every subcommand takes (-c, --socket, --runtime-dir): those `run` and
    `status` share, which have nothing else in common."""
    run = subparsers(top).choices["run"]
    status = subparsers(top).choices["status"]
    shared = {a.dest for a in status._actions} & {a.dest for a in run._actions}
    return tuple(_option(a) for a in status._actions
                 if a.dest in shared and a.option_strings and not isinstance(a, argparse._HelpAction))
