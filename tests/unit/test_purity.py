"""The engines are pure: nothing they import, directly or through other zelador modules, has side
effects. The test walks the import graph from each engine module (parent packages included, since
importing `a.b` runs `a/__init__.py`) and fails on any module outside a short allow-list."""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).parents[2] / "src"

# Standard-library modules that compute and do nothing else.
ALLOWED = {"__future__", "dataclasses", "enum", "typing", "collections", "collections.abc", "re",
           "math", "itertools", "functools", "bisect", "heapq"}

PURE = ["zelador.programs.engine", "zelador.programs.states", "zelador.programs.policy",
        "zelador.programs.group", "zelador.programs.family", "zelador.programs.steps",
        "zelador.events",
        "zelador.config.model", "zelador.jobs.engine", "zelador.alerts.incidents",
        "zelador.alerts.problems", "zelador.checks.rules", "zelador.checks.metrics",
        "zelador.checks.freshness"]

# The job engine does calendar arithmetic: croniter and zoneinfo read time-zone data files (data,
# not effects), and schedule.py reads TZ from os.environ for the machine's local zone.
CALENDAR = {"datetime", "zoneinfo", "croniter", "os"}
EXTRA = {"zelador.jobs.engine": CALENDAR, "zelador.checks.freshness": {"datetime"}}


def module_file(name: str) -> pathlib.Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(name: str) -> set[str]:
    path = module_file(name)
    assert path is not None, name
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from zelador.x import y` may name a module y
            found |= {f"{target}.{a.name}" for a in node.names if module_file(f"{target}.{a.name}")}
    return found


def closure(start: str) -> tuple[set[str], set[str]]:
    """(zelador modules reached, outside modules they import)."""
    seen: set[str] = set()
    outside: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen]
        for target in imports_of(name):
            if target.split(".")[0] == "zelador":
                if module_file(target):
                    todo.append(target)
            else:
                outside.add(target)
    return seen, outside


@pytest.mark.parametrize("module", [m for m in PURE if module_file(m)])
def test_engine_modules_reach_nothing_with_side_effects(module: str) -> None:
    reached, outside = closure(module)
    allowed = ALLOWED | EXTRA.get(module, set())
    assert outside <= allowed, f"{module} reaches {sorted(outside - allowed)} via {sorted(reached)}"


def test_the_walk_sees_indirect_imports() -> None:
    # The shell reaches psutil through the process table: the walk must find that.
    _, outside = closure("zelador.runtime.daemon")
    assert "psutil" in outside
    assert "zelador.programs.proctable" in closure("zelador.runtime.daemon")[0]
