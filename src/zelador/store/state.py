"""What survives a restart of zelador itself: per job, its whole state (runs in progress keep
their deadlines, so a run started before `systemctl restart zelador` still goes TIMEOUT on time);
per program, its counters, how it last ended, a
FATAL retry timer, a stop on request, a start still in flight (its time left), and a pending
`part_of` restart.

`snapshot` and `restore` are pure (monotonic deadlines become "seconds left", counted again from
the wall-clock time of the save, clamped so a clock step cannot stretch or skip a timer); `save`
writes the small JSON file atomically (mode 0600, an O_EXCL temporary with an unpredictable name,
fsync, rename; store/files.py); `StateWriter` does that on a thread of its own, so no fsync ever
runs on the loop; `load` reads it (never through a link) and raises StateFileError, which the
daemon journals before starting fresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from zelador.config.model import Job
from zelador.jobs.engine import Finished, JobPhase, JobState, Run
from zelador.programs.states import Phase, ProgramState
from zelador.store.files import open_private, write_atomic

VERSION = 1
FILE = "state.json"


class StateFileError(Exception):
    """The state file could not be read or makes no sense; its text says why."""


def snapshot(states: Mapping[str, ProgramState], now: float, wall: float) -> dict[str, Any]:
    programs: dict[str, Any] = {}
    for name, state in states.items():
        entry: dict[str, Any] = {"restarts": state.restarts, "attempts": state.attempts,
                                 "failures": state.failures, "last_exit": state.last_exit,
                                 "restarting": state.restarting}
        if state.phase == Phase.FATAL and state.deadline is not None:
            entry["fatal"] = {"left": max(0.0, state.deadline - now), "reason": state.reason,
                              "host_problem": state.host_problem}
        if state.phase == Phase.STOPPED:
            entry["stopped"] = True
        if state.phase == Phase.STARTING and state.instance is None and state.deadline is not None:
            # a start in flight (a wrapper that execs late): the next zelador waits for it
            entry["starting"] = {"left": max(0.0, state.deadline - now)}
        programs[name] = entry
    return {"version": VERSION, "saved_at": wall, "programs": programs}


def restore(data: Mapping[str, Any], states: Mapping[str, ProgramState], now: float,
            wall: float) -> dict[str, ProgramState]:
    """The states with what was saved put back (programs no longer configured are dropped)."""
    if data.get("version") != VERSION or not isinstance(data.get("programs"), dict):
        raise StateFileError(f"unknown format (version {data.get('version')!r})")
    saved_at = data.get("saved_at")
    away = max(0.0, wall - saved_at) if isinstance(saved_at, (int, float)) else 0.0
    out = dict(states)
    for name, entry in data["programs"].items():
        if name not in out or not isinstance(entry, dict):
            continue
        try:
            state = dataclasses.replace(
                out[name], restarts=int(entry.get("restarts", 0)),
                attempts=int(entry.get("attempts", 0)), failures=int(entry.get("failures", 0)),
                last_exit=str(entry.get("last_exit", "")),
                restarting=bool(entry.get("restarting", False)))
            fatal = entry.get("fatal")
            if isinstance(fatal, dict):
                left = max(0.0, float(fatal.get("left", 0.0)) - away)
                state = dataclasses.replace(state, phase=Phase.FATAL, since=now,
                                            deadline=now + min(left, float(fatal.get("left", 0.0))),
                                            reason=str(fatal.get("reason", "")),
                                            host_problem=str(fatal.get("host_problem", "")))
            elif isinstance(entry.get("starting"), dict):
                left = max(0.0, float(entry["starting"].get("left", 0.0)) - away)
                state = dataclasses.replace(state, phase=Phase.STARTING, since=now,
                                            deadline=now + left, script_running=False,
                                            reason="a start begun before zelador restarted")
            elif entry.get("stopped"):
                state = dataclasses.replace(state, phase=Phase.STOPPED, since=now,
                                            reason="stopped on request (before zelador restarted)")
        except (TypeError, ValueError) as exc:
            raise StateFileError(f"programs.{name}: {exc}") from None
        out[name] = state
    return out


def load(path: str) -> dict[str, Any] | None:
    """The saved data, None if there is no file yet."""
    try:
        with open(open_private(path, os.O_RDONLY), encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateFileError(str(exc)) from None
    if not isinstance(data, dict):
        raise StateFileError("not a JSON object")
    return data


def save(path: str, data: Mapping[str, Any]) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new one, never half.
    The daemon's folder is made and checked when it starts (store/files.py)."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    write_atomic(path, json.dumps(data, separators=(",", ":")).encode(), 0o600)


def describe(exc: OSError) -> str:
    """An OSError as one line; ENOSPC and EDQUOT are named "disk full"."""
    text = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({text})"
    return text


RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class StateWriter:
    """Writes state.json on a thread of its own: the loop hands over the latest snapshot and goes
    on (no write, no fsync on the loop). A failed write is tried again (1 s, doubling to 30 s)
    with the latest data; `on_problem(text, cleared)` is called once when a kind of error begins
    and once when writing works again, never per write."""

    def __init__(self, path: str, on_problem: Callable[[str, bool], None]) -> None:
        self.path = path
        self._on_problem = on_problem
        self._cond = threading.Condition()
        self._pending: Mapping[str, Any] | None = None
        self._stopping = False
        self._writing = False
        self.failing: str | None = None  # the condition said, until it clears
        self._thread: threading.Thread | None = None
        self.restart()

    # --- the loop side -------------------------------------------------------------------------

    def save(self, data: Mapping[str, Any]) -> None:
        with self._cond:
            self._pending = data
            self._cond.notify()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart(self) -> None:
        """Start the thread (again, after it died: what it held is still pending)."""
        if self.alive():
            return
        self._thread = threading.Thread(target=self._run, name="zelador-state", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is pending (for up to `timeout`) and stop; False if it could not be."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            return self._pending is None and not self._writing

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_FIRST
        retry_at: float | None = None  # after a failure: not before then (unless stopping)
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._pending is not None and (retry_at is None or now >= retry_at):
                        break
                    self._cond.wait(None if retry_at is None else max(0.0, retry_at - now))
                data, self._pending = self._pending, None
                if data is None:
                    return  # stopping, nothing left
                self._writing = True
            error = self._write(data)
            with self._cond:
                self._writing = False
                if error is None:
                    delay, retry_at = RETRY_FIRST, None
                    continue
                if self._stopping:
                    if self._pending is None:
                        self._pending = data  # close() says it was not written
                    return  # one last try only (it was said)
                if self._pending is None:
                    self._pending = data  # try again with it, unless newer data came
                retry_at = time.monotonic() + delay
                delay = min(delay * 2, RETRY_MAX)

    def _write(self, data: Mapping[str, Any]) -> str | None:
        try:
            save(self.path, data)
        except OSError as exc:
            text = describe(exc)
            if text != self.failing:
                self.failing = text
                self._tell(f"cannot write state file {self.path}: {text}; trying again "
                           "(supervision goes on)", False)
            return text
        except Exception as exc:  # a bug must not end the thread
            text = f"{type(exc).__name__}: {exc}"
            if text != self.failing:
                self.failing = text
                self._tell(f"cannot write state file {self.path}: {text}", False)
            return text
        if self.failing is not None:
            self.failing = None
            self._tell(f"state file {self.path} written again", True)
        return None

    def _tell(self, text: str, cleared: bool) -> None:
        with contextlib.suppress(Exception):  # the teller's bug must not end the writer
            self._on_problem(text, cleared)


# --- jobs: wall-clock moments already, saved as they are -----------------------------------------


SETTINGS = ("cron", "every", "timezone", "max_runtime")  # what the saved moments were worked out by


def jobs_snapshot(states: Mapping[str, JobState],
                  jobs: Mapping[str, Job] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, job in states.items():
        settings = jobs.get(name) if jobs else None
        entry = dataclasses.asdict(job)
        if settings is not None:
            entry["settings"] = {key: getattr(settings, key) for key in SETTINGS}
        entry["phase"] = job.phase.value
        if job.last is not None:
            entry["last"]["result"] = job.last.result.value
        entry["runs"] = [dataclasses.asdict(run) for run in job.runs]
        entry["timed_out"] = list(job.timed_out)
        del entry["name"]
        out[name] = entry
    return out


def jobs_restore(data: Mapping[str, Any], states: Mapping[str, JobState]) -> dict[str, JobState]:
    """The job states with what was saved put back (jobs no longer configured are dropped)."""
    saved = data.get("jobs")
    out = dict(states)
    if not isinstance(saved, dict):
        return out
    for name, entry in saved.items():
        if name not in out or not isinstance(entry, dict):
            continue
        try:
            last = entry.get("last")
            out[name] = JobState(
                name=name, phase=JobPhase(entry["phase"]), since=float(entry["since"]),
                expected=_maybe(entry.get("expected")),
                runs=tuple(Run(str(r["run_id"]), float(r["started"]), float(r["deadline"]),
                               str(r.get("source", ""))) for r in entry.get("runs", ())),
                last=None if not isinstance(last, dict) else Finished(
                    str(last["run_id"]), JobPhase(last["result"]), float(last["ended"]),
                    _maybe(last.get("started")), last.get("exit_status"),
                    _maybe(last.get("duration")), str(last.get("message", ""))),
                last_ok=_maybe(entry.get("last_ok")), serial=int(entry.get("serial", 0)),
                timed_out=tuple(str(r) for r in entry.get("timed_out", ())),
                reason=str(entry.get("reason", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(f"jobs.{name}: {exc!r}") from None
    return out


def saved_job_settings(data: Mapping[str, Any], jobs: Mapping[str, Job]) -> dict[str, Job]:
    """Per job, its settings when its state was saved (only where they differ from now), so the
    schedule and run deadlines worked out by the old ones can be worked out again."""
    out: dict[str, Job] = {}
    saved = data.get("jobs")
    if not isinstance(saved, dict):
        return out
    for name, job in jobs.items():
        entry = saved.get(name)
        settings = entry.get("settings") if isinstance(entry, dict) else None
        if not isinstance(settings, dict):
            continue
        try:
            old = dataclasses.replace(job, **{k: settings[k] for k in SETTINGS if k in settings})
        except TypeError:
            continue
        if old != job:
            out[name] = old
    return out


def _maybe(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
