"""All programs together, still pure: routes events, and carries `part_of` and `after`.

`part_of`: when a program comes back after an exit, the programs that are part of it get one
PeerRestarted each, so Monitor is restarted once, after Comunicador runs again — never doubled.
`after`: a program does not start while a program it comes after is still starting.
"""

from __future__ import annotations

from collections import deque

from zelador.config.model import Config
from zelador.programs.engine import step
from zelador.programs.states import Action, Input, Instance, PeerRestarted, PeersRestart, Phase, ProgramState

_NOT_YET_UP = (Phase.UNKNOWN, Phase.STARTING)


class Group:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.states: dict[str, ProgramState] = {p.name: ProgramState(p.name) for p in config.programs}

    def apply(self, name: str, event: Input, now: float) -> list[Action]:
        """Step program `name` (and any part_of followers); return the actions for the shell."""
        queue: deque[tuple[str, Input]] = deque([(name, event)])
        actions: list[Action] = []
        while queue:
            target, current = queue.popleft()
            program = self.config.program(target)
            waiting = tuple(dep for dep in program.after if self.states[dep].phase in _NOT_YET_UP)
            self.states[target], produced = step(program, self.states[target], current, now, waiting)
            for action in produced:
                if isinstance(action, PeersRestart):
                    queue.extend((p.name, PeerRestarted(action.program))
                                 for p in self.config.programs if action.program in p.part_of)
                else:
                    actions.append(action)
        return actions

    def reconfigure(self, config: Config) -> tuple[list[str], list[str]]:
        """Take a new config, keeping the state of programs that stay; return (added, removed)."""
        old = set(self.states)
        self.config = config
        self.states = {p.name: self.states.get(p.name, ProgramState(p.name)) for p in config.programs}
        return sorted(set(self.states) - old), sorted(old - set(self.states))

    def deadline(self) -> float | None:
        times = [s.deadline for s in self.states.values() if s.deadline is not None]
        return min(times) if times else None

    def instances(self) -> set[Instance]:
        """What to keep a pidfd on: each instance, leftovers being stopped, duplicates."""
        out = {s.instance for s in self.states.values()
               if s.instance is not None and s.phase != Phase.STOPPED}
        for state in self.states.values():
            out.update(state.leftovers)
            out.update(state.duplicates)  # its death shows at once (status lists live pids)
        return out

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        up = [s for s in self.states.values() if s.phase == Phase.RUNNING]
        down = [f"{s.name} {s.phase.value}" for s in self.states.values() if s.phase != Phase.RUNNING]
        restarts = sum(s.restarts for s in self.states.values())
        text = f"{len(up)}/{len(self.states)} up"
        if down:
            text += "; " + ", ".join(down)
        return text + f"; {restarts} restart{'s' if restarts != 1 else ''}"
