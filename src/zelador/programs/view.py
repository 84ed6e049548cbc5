"""What `zelador status` shows: a program's state as plain data, and as a table for people."""

from __future__ import annotations

import time
from typing import Any

from zelador.config.durations import format_duration
from zelador.programs.states import Phase, ProgramState


def program_status(state: ProgramState) -> dict[str, Any]:
    """A JSON-able view of one program (uptime comes from the process's own start time)."""
    instance = state.instance
    uptime = None
    if instance is not None and state.phase == Phase.RUNNING:
        uptime = max(0.0, time.time() - instance.create_time)
    return {
        "name": state.name,
        "state": state.phase.value,
        "pid": instance.pid if instance else None,
        "uptime": uptime,
        "started": instance.create_time if uptime is not None and instance else None,
        "restarts": state.restarts,
        "attempts": state.attempts,
        "last_exit": state.last_exit,
        "failures": state.failures,
        "duplicates": [d.pid for d in state.duplicates],
        "family": state.family_size,
        "reason": state.reason,
    }


def render(reply: dict[str, Any]) -> str:
    """The table `zelador status` prints."""
    rows: list[list[str]] = [["PROGRAM", "STATE", "PID", "UPTIME", "RESTARTS", "NOTE"]]
    for prog in reply.get("programs", []):
        note = prog.get("reason") or ""
        if prog.get("family") and prog.get("pid"):  # the tree: the instance and those below it
            note = (note + "; " if note else "") + f"tree: {prog['family'] + 1} processes"
        if prog.get("duplicates"):
            note = (note + "; " if note else "") + "duplicates: " + ", ".join(
                str(p) for p in prog["duplicates"])
        uptime = prog.get("uptime")
        rows.append([prog["name"], prog["state"], str(prog["pid"] or "-"),
                     format_duration(uptime) if uptime is not None else "-",
                     str(prog["restarts"]), note])
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
             for row in rows]
    head = f"zelador pid {reply.get('pid')}, config {reply.get('config')}: {reply.get('summary')}"
    out = [head, *[line.rstrip() for line in lines]]
    identity = reply.get("config_identity")
    if identity:
        out.append(config_line(identity))
    jobs = reply.get("jobs") or []
    if jobs:
        bad = [f"{j['name']} {j['state']}" for j in jobs if j.get("problem")]
        out.append(f"jobs: {len(jobs)}" + (f"; {', '.join(bad)} (see `zelador jobs`)" if bad
                                           else ", none failed"))
    checks = reply.get("checks") or []
    if checks:
        out.append(f"checks: {len(checks)}")
        out += [f"  {line}" for line in check_lines(checks)]
    for part in reply.get("degraded") or []:
        out.append(f"degraded: {part['part']}: {part['reason']} ({part['count']} time(s))")
    return "\n".join(out)


def config_line(identity: dict[str, Any]) -> str:
    """Which config runs, in one line: its hash, how many files, since when, the last reload."""
    files = identity.get("files") or []
    loaded = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(identity.get("loaded_at") or 0))
    line = (f"config {str(identity.get('sha256', ''))[:12]} ({len(files)} "
            f"file{'s' if len(files) != 1 else ''}), loaded {loaded}")
    last = identity.get("last_reload") or {}
    if last.get("ok") is False:
        at = time.strftime("%H:%M:%S", time.localtime(last.get("at") or 0))
        line += f"; last reload REFUSED at {at}: {last.get('error')}"
    return line


def check_lines(checks: list[dict[str, Any]]) -> list[str]:
    """One line per check: name, state, last value (and threshold), last result."""
    rows = [["CHECK", "STATE", "VALUE", "LAST"]]
    for check in checks:
        value = check.get("value") or "-"
        if check.get("threshold"):
            limit = str(check["threshold"])
            value += f" ({limit})" if limit.startswith(("<", ">")) else f" (> {limit})"
        rows.append([check["name"], check["state"], value, check.get("reason") or ""])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  "
             + row[3]).rstrip() for row in rows]


def all_running(reply: dict[str, Any]) -> bool:
    """Everything watched runs (a `user: session` program WAITING for a desktop counts: with
    nobody logged in there is nothing for it to show)."""
    fine = (Phase.RUNNING.value, Phase.WAITING.value)
    return all(p["state"] in fine for p in reply.get("programs", []))
