"""The daemon process: the loop, signals, sd_notify, the control socket, reload and shutdown.

It builds the loop and the supervisor (runtime/supervisor.py, where restarts are decided by the
engine) and connects the rest: SIGHUP reloads, SIGTERM/SIGINT stop zelador (never the watched
programs), the watchdog is pinged from a loop timer (so a stuck loop stops the pings), STATUS=
follows the programs, and control requests are answered between turns.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
import time
from dataclasses import replace
from typing import Any

from zelador import __version__
from zelador.config.model import Config
from zelador.config.reader import load_config
from zelador.errors import ZeladorError
from zelador.events import Event, Sink
from zelador.programs.launcher import Launcher
from zelador.programs.pidfd import SUPPORTED as PIDFD
from zelador.programs.pidfd import Watches
from zelador.programs.procevents import open_proc_events
from zelador.programs.proctable import ProcessTable
from zelador.programs.reaper import become_subreaper
from zelador.programs.view import program_status
from zelador.runtime.alerts import AlertLink
from zelador.runtime.checks import CheckBook
from zelador.runtime.control import REPLY_TIMEOUT, ControlServer
from zelador.runtime.fleet import FleetLink
from zelador.runtime.intake import IntakeProcess
from zelador.runtime.jobs import (
    JobBook,
    replay_reports,
    replay_spool,
    report_from,
    report_json,
)
from zelador.runtime.loop import Loop, Timer
from zelador.runtime.supervisor import Supervisor, Table, Watcher, event_kinds
from zelador.runtime.threads import ThreadWatch, watch_parts
from zelador.runtime.web import WebLink
from zelador.store import state
from zelador.store.history import ReportRow, read_reports_after
from zelador.store.historywriter import HistoryWriter
from zelador.systemd.journal import Journal
from zelador.systemd.notify import Notifier, watchdog_interval
from zelador.systemd.shutdown import system_stopping

# What a reload (SIGHUP) does with each top-level key of the config (a test holds that every
# key of config/keys.py is in one of these): applied at once, or kept until zelador restarts
# (a change is then refused with one line, and the rest of the new config is applied).
APPLIED_ON_RELOAD = ("interval", "programs", "check", "jobs", "intake", "history", "alerts",
                     "checks", "system", "web", "fleet")
RESTART_ONLY = ("control",)  # the socket is bound (and its group set) once, at start
JOBS_SAVED_EVERY = 1.0  # job-only changes reach state.json at most this often
SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the interpreter lock while another waits


class Daemon:
    def __init__(self, config: Config, *, journal: Journal, launcher: Launcher,
                 notifier: Notifier | None = None, control: ControlServer | None = None,
                 loop: Loop | None = None, table: Table | None = None,
                 watches: Watcher | None = None, once: bool = False,
                 subreaper: bool | None = None, proc_events: bool = True,
                 state_file: str | None = None, history_file: str | None = None,
                 intake: bool = True, spool_dir: str | None = None,
                 alerts_file: str | None = None) -> None:
        self.journal = journal
        self.loop = loop or Loop()
        self.history: HistoryWriter | None = None
        if history_file is not None:
            try:
                self.history = HistoryWriter(history_file, keep=config.history.keep,
                                             max_rows=config.history.max_rows,
                                             on_problem=self._history_problem,
                                             keep_bytes=config.history.keep_bytes)
            except (OSError, sqlite3.Error) as exc:  # supervision goes on without a history
                journal.emit(Event("degraded", f"no history: cannot open {history_file}: {exc}",
                                   priority=3))
        # every sink behind the loop's error boundary: a sink that raises is counted and marked
        # degraded, and the supervision decision that emitted the event is carried out all the same
        sinks: list[Sink] = [self.loop.guarded(journal, "journal")]
        if self.history is not None:
            sinks.append(self.loop.guarded(self.history, "history"))
        self.alerts = AlertLink(self.loop, journal.emit)
        desk: Sink | None = None
        if alerts_file is not None:
            self.alerts.open(config, alerts_file, self._run_helper, said=self._said)
            if self.alerts.desk is not None:
                desk = self.loop.guarded(self.alerts.desk, "alerts")
                sinks.append(desk)
        self._sinks = sinks
        self._desk = desk
        self.health = self.loop.health
        self.loop.after_turn(self._say_health, "health")
        self.notifier = notifier or Notifier(
            lambda msg: journal.emit(Event("degraded", msg, priority=4)))
        self.control = control  # None in check mode
        self.once = once
        self.started_at = time.time()
        self.loaded_at = self.started_at  # when the running config was read
        self.last_reload: dict[str, Any] = {}  # {"at", "ok", "error"} once a reload was asked
        subreaper = become_subreaper() if subreaper is None else subreaper
        self.supervisor = Supervisor(
            config, loop=self.loop, table=table or ProcessTable(config.programs),
            launcher=launcher, watches=watches or Watches(), sinks=sinks, pidfd=PIDFD,
            subreaper=subreaper,
            proc_events=open_proc_events(event_kinds(config)) if proc_events else None)
        self.loop.after_turn(lambda: self.notifier.status(self.supervisor.group.summary()),
                             "notify")
        if self.alerts.desk is not None:
            self.loop.after_turn(lambda: self.alerts.after_turn(
                lambda: {name: bool(st.duplicates)
                         for name, st in self.supervisor.group.states.items()}), "alerts")
        self.jobs = JobBook(config.jobs, loop=self.loop, sinks=sinks,
                            record_run=self.history.record_run if self.history else None)
        self.checks = CheckBook(config, loop=self.loop, sinks=sinks,
                                states=lambda: self.supervisor.group.states,
                                restart=lambda name, why: self.supervisor.command(
                                    name, "restart", why),
                                runner=self._run_helper, healthy=self.supervisor.health_passed)
        self.want_intake = intake
        self.spool_dir = spool_dir
        self.intake: IntakeProcess | None = None
        self.state_file = state_file
        self._saved: dict[str, Any] = {}
        self._applied: int | None = None  # the last report the saved job states hold
        self._seen: tuple[object, ...] = ()  # the states the last snapshot was taken of
        self._saved_at = -JOBS_SAVED_EVERY
        self._save_timer: Timer | None = None
        self._state_writer: state.StateWriter | None = None
        if state_file is not None:
            self._state_writer = state.StateWriter(state_file, self._state_problem)
            self._restore(state_file)
            self.loop.after_turn(self._persist, "state file")
        self._watchdog = watchdog_interval()
        self.web = WebLink(self.loop, self.journal.emit)
        if not once:
            self.web.open(config.web, self._snapshot, self.answer, history_file)
        self.fleet = FleetLink(self.loop, self.journal.emit, self._fleet_state)
        # every thread of ours is watched: a dead one is restarted (its queue kept), journaled
        self.threads = ThreadWatch(self.loop)
        watch_parts(self.threads, self)

    @property
    def config(self) -> Config:
        return self.supervisor.config

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (or, in check mode, until every program settled)."""
        # The history's writer thread shares the interpreter lock with the loop; hand it over
        # within 0.5 ms (default 5 ms), so a pidfd that fires while rows are being written is
        # served at once. The cost, a few more switches, exists only while both are busy.
        sys.setswitchinterval(SWITCH_INTERVAL)
        loop = self.loop
        loop.on_signal(signal.SIGTERM, lambda: self.shutdown("SIGTERM"))
        loop.on_signal(signal.SIGINT, lambda: self.shutdown("SIGINT"))
        if not self.once:
            loop.on_signal(signal.SIGHUP, self._hangup)
        if self.supervisor.subreaper:  # an orphan of ours died: wake up and reap it
            loop.on_signal(signal.SIGCHLD, lambda: None)
        if self.control is not None:
            loop.watch(self.control.fileno(), self._accept, "control")
            loop.watch(self.control.writer_fileno(), self.control.flush, "control")
        if not self.once:
            if self.history is not None and self._applied is not None:
                # reports answered OK after the last save (zelador was killed): apply them
                replay_reports(read_reports_after(self.history.path, self._applied), self.jobs,
                               self.journal.emit)
            if self.spool_dir is not None:
                replay_spool(self.spool_dir, self.jobs, self.journal.emit)
            self.jobs.start()
            self.checks.start()
            self._open_intake()
            self.web.start()
            self.fleet.open(self.config.fleet)
            self.alerts.start()
            self.threads.start()
            self._vendor_starters()
        try:
            self.supervisor.settle()  # the first look: adopt what runs, start what does not
            if not self.once:  # logged before READY=1, so it precedes systemd's "Started"
                group = self.supervisor.group
                self.journal.emit(Event("ready", f"watching {len(self.config.programs)} programs "
                                        f"({group.summary()}); config {self.config.path}",
                                        priority=5))
            self.notifier.ready(self.supervisor.group.summary())
            if self._watchdog:
                self._ping()
            while not loop.stopped and not (self.once and self.supervisor.settled()):
                loop.turn()
        finally:
            if self.intake is not None:
                self.intake.close()  # (applies what it had received)
            self.checks.close()
            self.web.close()
            self.fleet.close()
            self.alerts.close()
            if self._state_writer is not None:
                self._persist(force=True)  # a job report of the last second is not lost
                self._state_writer.close()
            if self.history is not None:
                self.history.close()
            self.supervisor.watches.close_all()
            if self.supervisor.proc_events is not None:
                self.supervisor.proc_events.close()
            loop.close()
        return 0

    def _restore(self, path: str) -> None:
        group = self.supervisor.group
        try:
            data = state.load(path)
            if data is not None:
                group.states = state.restore(data, group.states, self.loop.clock(), time.time())
                self.jobs.restore(state.jobs_restore(data, self.jobs.states),
                                 data.get("jobs_clock"))
                self.jobs.reconcile(state.saved_job_settings(data, self.jobs.jobs))
                self._saved = {"programs": _rounded(data["programs"]), "jobs": data.get("jobs")}
                applied = data.get("reports_applied")
                if isinstance(applied, int) and not isinstance(applied, bool) and applied >= 0:
                    self._applied = self.jobs.applied = applied
                    if self.history is not None:
                        self.history.reserve(applied)
        except state.StateFileError as exc:
            self.journal.emit(Event("state_ignored", f"state file {path} ignored, starting "
                                    f"fresh: {exc}", priority=4))

    def _persist(self, force: bool = False) -> None:
        """Save what must survive our own restart, when it changed (a few hundred bytes)."""
        assert self.state_file is not None
        programs = tuple(self.supervisor.group.states.values())
        states = (*programs, *self.jobs.states.values())
        if _same(states, self._seen):
            return  # no state changed this turn (states are replaced, never mutated)
        now = self.loop.clock()
        if (not force and _same(programs, self._seen[:len(programs)])
                and now - self._saved_at < JOBS_SAVED_EVERY):
            # only jobs changed (a burst of reports): once a second is enough, and saves a
            # write and an fsync per report
            if self._save_timer is None:
                self._save_timer = self.loop.at(self._saved_at + JOBS_SAVED_EVERY,
                                                self._persist_later)
            return
        self._seen = states
        self._saved_at = now
        data = state.snapshot(self.supervisor.group.states, self.loop.clock(), time.time())
        data["jobs"] = state.jobs_snapshot(self.jobs.states, self.jobs.jobs)
        data["reports_applied"] = self.jobs.applied  # later ones are applied again at start
        data["jobs_clock"] = self.jobs.clock.saved()  # what the job states' moments are on
        kept = {"programs": _rounded(data["programs"]), "jobs": data["jobs"]}
        if kept == self._saved:
            return
        assert self._state_writer is not None
        self._state_writer.save(data)  # written (and fsynced) on the writer's thread
        self._saved = kept

    def _state_problem(self, message: str, cleared: bool) -> None:
        """Said by the state writer's thread (once per condition): journaled on the loop."""
        self.loop.post(lambda: self.journal.emit(Event(
            "degraded", message, priority=5 if cleared else 4,
            fields=(("part", "state"), ("cleared", "yes" if cleared else "no")))))

    def _persist_later(self) -> None:
        self._save_timer = None
        self._persist()

    # --- alerts ---------------------------------------------------------------------------------

    def _run_helper(self, argv: list[str], data: bytes, timeout: float,
                    env: dict[str, str]) -> tuple[int | None, bytes]:
        """An alert command, from its channel's thread: spawned through the launcher, so the
        reaper leaves it to its Popen."""
        return self.supervisor.launcher.run_helper(argv, data, timeout, env)

    def _said(self, event: Event) -> None:
        """What the outbox says (alert_sent ...): to the journal and the history, not to alerts."""
        for sink in self._sinks:
            if sink is not self._desk:
                sink.emit(event)

    def _say_health(self) -> None:
        """Journal (and record) what became degraded or works again, once per change."""
        for event in self.health.changes():
            self._said(event)

    # --- the web server -----------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        """What the page, /api/status and /metrics show (built on the loop thread)."""
        data = self.answer({"cmd": "status"})
        data["host"] = self.config.alerts.host or self.config.fleet.name or socket.gethostname()
        data["incidents"] = self.alerts.status()
        data["loop_lag"] = self.web.lag
        data["scan_seconds"] = self.supervisor.scan_seconds
        return data

    # --- the fleet (ZooKeeper) -----------------------------------------------------------------

    def _fleet_state(self) -> dict[str, Any]:
        """This terminal as the fleet sees it (without its time: a change is a change of this)."""
        sup = self.supervisor
        programs = {name: st.phase.value for name, st in sup.group.states.items()}
        fine = ("RUNNING", "WAITING", "UNKNOWN")  # UNKNOWN: before the first look, not down
        return {"version": __version__, "summary": sup.group.summary(), "programs": programs,
                "config_sha256": self.config.sha256,
                "down": sorted(n for n, state in programs.items() if state not in fine),
                "jobs": {name: st.phase.value for name, st in self.jobs.states.items()},
                "problems": sorted(f"{i['subject']} {i['problem']}" for i in
                                   self.alerts.status())}

    # --- jobs: the history's complaints, the TCP intake -------------------------------------------

    def _history_problem(self, message: str) -> None:
        """Said by the history's thread: journaled on the loop thread."""
        self.loop.post(lambda: self.journal.emit(Event("degraded", message, priority=4)))

    def _open_intake(self) -> None:
        settings = self.config.intake
        if not (self.want_intake and settings.enabled and self.config.jobs):
            return
        try:
            self.intake = IntakeProcess(settings, self.jobs, self.loop,
                                        spawn=self.supervisor.launcher.spawn_helper,
                                        emit=self.journal.emit, history=self.history)
        except OSError as exc:
            self.journal.emit(Event("degraded", f"cannot listen for job reports on "
                                    f"{settings.host}:{settings.port}: {exc.strerror}; jobs can "
                                    "still report with `zelador report` and `zelador exec`",
                                    priority=3))

    def _ping(self) -> None:
        assert self._watchdog is not None
        self.notifier.watchdog()
        self.loop.at(self.loop.clock() + self._watchdog, self._ping, "watchdog")

    # --- control ------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self.control is not None
        now = self.loop.clock()
        fd = self.control.accept(now)
        if fd is None:
            return
        conn = self.control.clients[fd][0]
        self.loop.watch(fd, lambda: self._serve(fd), "control request")
        self.loop.at(self.control.deadline(fd), lambda: self._expire(fd, conn), "control")

    def _expire(self, fd: int, conn: object) -> None:
        """Drop the client if it is still waiting: the same connection, not a later one that
        was given the same fd number after this one was answered."""
        assert self.control is not None
        if self.control.drop(fd, conn):
            self.loop.unwatch(fd)

    def _serve(self, fd: int) -> None:
        assert self.control is not None
        entry = self.control.clients.get(fd)
        try:
            got = self.control.receive(fd)
        except Exception:  # the boundary counts it; the client is let go, its fd unwatched
            self.loop.unwatch(fd)
            self.control.clients.pop(fd, None)
            if entry is not None:
                entry[0].close()
            raise
        if got is None:
            return
        self.loop.unwatch(fd)
        conn, request = got
        control = self.control
        try:
            answer = request if "error" in request else self.answer(request)
        except Exception as exc:  # the client hears of it; the loop's boundary counts it
            control.reply(conn, {"error": f"zelador failed on this request: {exc!r}"[:300]})
            raise
        if request.get("cmd") == "report" and answer.get("ok") and self.history is not None:
            # answered once the history holds the report (as the TCP intake does)
            self.history.barrier(lambda: self.loop.post(lambda: self._reply(fd, conn, answer)))
            return
        self._reply(fd, conn, answer)

    def _reply(self, fd: int, conn: socket.socket, answer: dict[str, Any]) -> None:
        control = self.control
        assert control is not None
        if control.reply(conn, answer):  # a large reply: the rest goes out as it is read
            self.loop.at(self.loop.clock() + REPLY_TIMEOUT, lambda: control.give_up(fd, conn))

    def answer(self, request: dict[str, object]) -> dict[str, Any]:
        """Reply to a control request (status, start, stop, restart)."""
        sup = self.supervisor
        cmd = request.get("cmd")
        if cmd == "status":
            programs = [program_status(sup.group.states[p.name]) for p in self.config.programs]
            return {"pid": os.getpid(), "config": self.config.path, "started": self.started_at,
                    "config_identity": self.config_identity(),
                    "summary": sup.group.summary(), "programs": programs,
                    "jobs": self.jobs.status(), "intake": self._intake_status(),
                    "checks": self.checks.status(), "degraded": self.health.status(),
                    "errors": self.loop.errors}
        if cmd == "checks":
            return {"checks": self.checks.status()}
        if cmd == "reload":  # `zelador reload` (ExecReload=): the verdict, not just a signal
            refused = self.reload()
            if refused:
                return {"error": refused, "code": "config", "config_identity":
                        self.config_identity()}
            return {"ok": True, "config_identity": self.config_identity()}
        if cmd == "jobs":
            return {"jobs": self.jobs.status(), "intake": self._intake_status()}
        if cmd == "report":
            return self._report(request)
        if cmd in ("start", "stop", "restart"):
            name = request.get("program")
            if not isinstance(name, str) or name not in sup.group.states:
                known = ", ".join(sup.group.states)
                return {"error": f"no program {name!r} in {self.config.path} (known: {known})",
                        "code": "unknown_program"}
            by = request.get("_by")  # who, on the control socket (the web says nothing)
            sup.command(name, str(cmd), f"{cmd} requested by {by}" if by else "")
            return {"ok": True, "program": program_status(sup.group.states[name])}
        return {"error": f"unknown request {request!r} (try: status, start, stop, restart, jobs, "
                         "report, checks, reload)"}

    def config_identity(self) -> dict[str, Any]:
        """Which config runs: its hash over every file read, the files, when it was read, and
        how the last reload went (refused: why)."""
        return {"sha256": self.config.sha256, "files": list(self.config.files),
                "loaded_at": self.loaded_at, "last_reload": dict(self.last_reload)}

    def _intake_status(self) -> dict[str, Any] | None:
        return None if self.intake is None else self.intake.status()

    def _report(self, request: dict[str, object]) -> dict[str, Any]:
        """`zelador report` and `zelador exec`: one report through the control socket."""
        name = request.get("job")
        if not isinstance(name, str) or name not in self.jobs.jobs:
            known = ", ".join(self.jobs.jobs) or "none"
            self.jobs.reject(f"unknown job {str(name)[:60]!r} (from zelador report)")
            return {"error": f"no job {name!r} in {self.config.path} (known: {known})",
                    "code": "unknown_job"}
        try:
            report, at = report_from(request)
        except (TypeError, ValueError) as exc:
            return {"error": f"bad report: {exc}", "code": "usage"}
        ident = self.history.next_report if self.history is not None else None
        verdict = self.jobs.offer(name, report, at=at, ident=ident)
        if self.history is not None:
            self.history.record_report(ReportRow(
                time.time(), report.source, name, report.verb, not verdict, verdict, "", ident,
                None if verdict else report_json(report, at)))
        if verdict:
            return {"error": f"report refused: {verdict}", "code": "refused"}
        return {"ok": True, "job": self.jobs.one(name)}

    # --- reload and shutdown ------------------------------------------------------------------

    def _vendor_starters(self) -> None:
        """Say once, at start, which vendor autostart entries, units and init scripts also
        start a watched program, and what will happen (config/starters.py)."""
        from zelador.config import starters

        root = os.environ.get("ZELADOR_VENDOR_ROOT", "/")  # tests lay out a machine's files
        try:
            found = starters.find(self.config, root)
        except Exception as exc:  # a look at other packages' files never stops zelador
            self.journal.emit(Event("degraded", f"cannot look for vendor starters: {exc}", priority=4))
            return
        for starter in found:
            self.journal.emit(Event("vendor_starter", starters.advice(self.config, starter, root),
                                    starter.program, priority=5,
                                    fields=(("starter", starter.path),)))

    def _hangup(self) -> None:
        self.reload()  # SIGHUP: the verdict goes to the journal (and config_identity)

    def reload(self) -> str:
        """Read the config again; if it is broken, say so, keep running the old one and return
        why ("" when the new config is in force)."""
        self.notifier.reloading()
        try:
            new = load_config(self.config.path, host_checks=False)
        except ZeladorError as exc:
            self.last_reload = {"at": time.time(), "ok": False, "error": str(exc)}
            self.journal.emit(Event("config_rejected", f"reload refused, the running config "
                                    f"stays: {exc}", priority=3))
            self.notifier.ready(self.supervisor.group.summary())
            return str(exc)
        self.loaded_at = time.time()
        self.last_reload = {"at": self.loaded_at, "ok": True, "error": ""}
        old_fleet, old_web = self.config.fleet, self.config.web
        kept = [key for key in RESTART_ONLY if getattr(new, key) != getattr(self.config, key)]
        if kept:
            new = replace(new, **{key: getattr(self.config, key) for key in kept})
            self.journal.emit(Event("config_rejected", f"reload: {', '.join(kept)} changed in "
                                    f"{new.path}, which takes effect only when zelador restarts "
                                    "(systemctl restart zelador); the running "
                                    f"{', '.join(kept)} stays, the rest is applied",
                                    priority=4))
        added, removed = self.supervisor.reconfigure(new)
        self.jobs.reconfigure(new.jobs)
        self.checks.configure(new)
        if new.fleet != old_fleet:
            self.fleet.close()
            if not self.once:
                self.fleet.open(new.fleet)
        if not self.once:
            self.checks.start()
            if new.web != old_web:
                self.web.reconfigure(new.web)
        self.alerts.reconfigure(new)
        if self.history is not None:
            self.history.keep, self.history.max_rows = new.history.keep, new.history.max_rows
            self.history.keep_bytes = new.history.keep_bytes
        if self.intake is not None and (new.intake != self.intake.settings or not new.jobs):
            self.intake.close()
            self.intake = None
        if self.intake is None:
            self._open_intake()
        else:
            self.intake.update(self.jobs.directory)
        change = []
        if added:
            change.append("added " + ", ".join(added))
        if removed:
            change.append("no longer watching " + ", ".join(removed) + " (left running)")
        self.journal.emit(Event("reloaded", f"config {new.path} reloaded"
                                f"{': ' + '; '.join(change) if change else ''}", priority=5))
        self.notifier.ready(self.supervisor.group.summary())
        return ""

    def shutdown(self, why: str) -> None:
        """Leave the loop; the watched programs are left running."""
        self.loop.stop()
        self.notifier.stopping()
        if self.once:
            return
        if self.supervisor.launcher.stop_after and system_stopping():
            # the programs' scopes stop after us (Before=): their ends are systemd's, not exits
            self.journal.emit(Event("shutdown", "system is shutting down; leaving programs to "
                                    "systemd", priority=5))
            return
        self.journal.emit(Event("shutdown", f"stopping on {why}; watched programs are left "
                                "running", priority=5))


def _same(states: tuple[object, ...], seen: tuple[object, ...]) -> bool:
    return len(states) == len(seen) and all(a is b for a, b in zip(states, seen))


def _rounded(programs: dict[str, Any]) -> dict[str, Any]:
    """The saved entries without their seconds-left: a timer running down is no change."""
    return {name: {k: (bool(v) if k in ("fatal", "starting") else v) for k, v in entry.items()}
            for name, entry in programs.items()}

