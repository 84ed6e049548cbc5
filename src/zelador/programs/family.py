"""Pure rules about process families: which match is the instance, which are its family.

Real daemons are families (nginx: a master and its workers; sshd: a child per connection; redis:
a save child), and a name match sees them all. The rule, as monit's: the instance is a top-most
match, one with no matching ancestor; matches below it are its family, not duplicates; only
another top-most match is a duplicate. The family (every descendant, matching or not) is
remembered while the instance lives, because when the instance dies its orphans are reparented
and their ancestry is gone: those leftovers are never adopted as the instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from zelador.programs.states import Instance

MAX_DEPTH = 64  # a parent chain longer than this is cut (and a cycle cannot hang us)


@dataclass(frozen=True)
class Node:
    instance: Instance
    ppid: int


def top_most(matches: Sequence[Node], parent_of: Mapping[int, int]) -> list[Node]:
    """The matches with no matching ancestor, oldest first (ties: lower pid)."""
    matching = {node.instance.pid for node in matches}
    roots = []
    for node in matches:
        pid, depth = node.ppid, 0
        while pid > 1 and depth < MAX_DEPTH and pid not in matching:
            pid, depth = parent_of.get(pid, 0), depth + 1
        if pid not in matching or pid == node.instance.pid:  # (back at itself: a cycle)
            roots.append(node)
    return sorted(roots, key=lambda n: (n.instance.create_time, n.instance.pid))


def children_index(nodes: Iterable[Node]) -> dict[int, list[Instance]]:
    out: dict[int, list[Instance]] = {}
    for node in nodes:
        out.setdefault(node.ppid, []).append(node.instance)
    return out


def descendants(pid: int, children: Mapping[int, list[Instance]]) -> frozenset[Instance]:
    """Every process below `pid` (children, their children ...)."""
    found: set[Instance] = set()
    todo = [pid]
    while todo and len(found) < 100_000:
        for child in children.get(todo.pop(), ()):
            if child not in found and child.pid != pid:
                found.add(child)
                todo.append(child.pid)
    return frozenset(found)


def leftovers(family: Iterable[Instance], alive: Iterable[Instance],
              spare: Iterable[Instance] = ()) -> tuple[Instance, ...]:
    """The remembered family members still alive, except those spared (a successor and its
    own family, e.g. nginx's new master after a binary upgrade)."""
    living, spared = set(alive), set(spare)
    return tuple(sorted((i for i in family if i in living and i not in spared),
                        key=lambda i: i.pid))
