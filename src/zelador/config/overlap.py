"""Which programs' matches could select the same process (a warning in `zelador validate`)."""

from __future__ import annotations

from zelador.config.model import Config, Match


def overlapping_matches(config: Config) -> list[str]:
    """One line per pair of programs whose matches may both select one process.

    Two matches can only both hold when no criterion they share disagrees: different names,
    executables or pidfiles (or users) keep them apart; a regex on the command line is assumed
    able to match anything, so it separates nothing.
    """
    out = []
    programs = list(config.programs)
    for i, first in enumerate(programs):
        for second in programs[i + 1:]:
            if _may_overlap(first.match, second.match):
                out.append(f"programs.{first.name} and programs.{second.name}: their `match:` can "
                           "select the same process (make them differ by name, exe, pidfile or user)")
    return out


def _may_overlap(a: Match, b: Match) -> bool:
    for key in ("name", "exe", "pidfile", "user"):
        left, right = getattr(a, key), getattr(b, key)
        if left is not None and right is not None and left != right:
            return False
    return True


def pidfile_only(config: Config) -> list[str]:
    """One line per program matched by its pidfile alone: its start-time check stops a stale
    pidfile's reused pid, but a name or exe tells the program from a stranger for certain."""
    return [f"programs.{p.name}.match: a pidfile alone cannot tell a reused pid from the program "
            "(add name: or exe:)" for p in config.programs
            if p.match.pidfile is not None and p.match.name is None and p.match.exe is None]
