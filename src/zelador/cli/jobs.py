"""The job commands: `zelador report`, `zelador exec`, `zelador jobs`, `zelador history`.

`report`, `exec` and `jobs` talk to the daemon over the control socket; `history` reads the
SQLite history itself (read-only), so it works while zelador is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

from zelador.config.durations import format_duration, parse_duration
from zelador.errors import EX_DOWN, EX_OK, ControlError, UsageError
from zelador.runtime.control import ask

SocketPath = Callable[[argparse.Namespace], str]


def state_dir(args: argparse.Namespace) -> str:
    return str(getattr(args, "state_dir", None) or
               os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "/var/lib/zelador")


def cmd_report(args: argparse.Namespace, socket_path: SocketPath) -> int:
    request: dict[str, Any] = {"cmd": "report", "job": args.job, "verb": args.verb,
                               "source": "zelador report"}
    if args.message is not None:
        request["message"] = args.message
    if args.exit_code is not None:
        request["exit_status"] = args.exit_code
    if args.run is not None:
        request["run"] = args.run
    reply = ask(socket_path(args), request)
    job = reply["job"]
    print(f"{job['name']}: {job['state']}" + (f": {job['reason']}" if job["reason"] else ""))
    return EX_OK


def cmd_exec(args: argparse.Namespace, socket_path: SocketPath) -> int:
    from zelador.jobs.wrapper import run_wrapped

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("give the command to run after --: zelador exec JOB -- COMMAND ARGS...")
    path = socket_path(args)
    return run_wrapped(args.job, argv, lambda request: _send(path, request), user=args.user,
                       err=sys.stderr, spool=os.path.join(state_dir(args), "spool"))


def _send(path: str, request: dict[str, Any]) -> None:
    ask(path, request, timeout=5.0)


def cmd_jobs(args: argparse.Namespace, socket_path: SocketPath) -> int:
    reply = ask(socket_path(args), {"cmd": "jobs"})
    jobs = reply["jobs"]
    if args.json:
        print(json.dumps(reply, indent=2))
    else:
        print(render_jobs(jobs))
    return EX_DOWN if any(job["problem"] for job in jobs) else EX_OK


def render_jobs(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs configured"
    rows = [("JOB", "STATE", "LAST RUN", "TOOK", "EXIT", "NEXT EXPECTED")]
    for job in jobs:
        last = job["last"] or {}
        when = last.get("started") or last.get("ended")
        rows.append((
            job["name"], job["state"], _local(when) if when else "-",
            format_duration(round(last["duration"], 1)) if last.get("duration") is not None else "-",
            str(last["exit_status"]) if last.get("exit_status") is not None else "-",
            job["expected_text"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for job in jobs:
        if job["reason"]:
            lines.append(f"{job['name']}: {job['reason']}")
    return "\n".join(lines)


def cmd_history(args: argparse.Namespace) -> int:
    from zelador.store.history import FILE as HISTORY_FILE
    from zelador.store.history import read_events

    since = None
    if args.since:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    path = os.path.join(state_dir(args), HISTORY_FILE)
    if args.stats or args.backup:
        return _history_file(args, path)
    kinds = [k for given in args.kind for k in given.split(",") if k]
    limit = args.limit if args.limit is not None else (None if since is not None else 1000)
    events = read_events(path, since=since, name=args.name, kinds=kinds, limit=limit,
                         fields=args.json)
    if args.json:
        print(json.dumps(events, ensure_ascii=False))
        return EX_OK
    sys.stdout.write("".join(f"{_local(ev['time'])}  {ev['subject'] or 'zelador':<14} "
                             f"{ev['kind']:<14} {ev['message']}\n" for ev in events))
    if not events and not os.path.exists(path):
        print(f"zelador: no history at {path} yet", file=sys.stderr)
    return EX_OK


def exit_status(text: str) -> int:
    """An exit status for argparse: a whole number 0-255, else a clear error."""
    try:
        value = int(text) if len(text) <= 10 else -1
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is out of range (an exit status is "
                                         "0 to 255)")
    return value


def _history_file(args: argparse.Namespace, path: str) -> int:
    """`--stats` (its size in bytes, rows, time span) and `--backup FILE` (SQLite's online
    backup: safe while zelador runs)."""
    from zelador.store.history import backup, stats

    if not os.path.exists(path):
        raise ControlError(f"no history at {path} yet")
    if args.backup:
        try:
            size = backup(path, args.backup)
        except FileExistsError:
            raise UsageError(f"--backup: {args.backup} exists; give a new file") from None
        print(f"{args.backup}: {size} bytes, a consistent copy of {path}")
        return EX_OK
    figures = stats(path)
    if args.json:
        print(json.dumps(figures))
        return EX_OK
    files = ", ".join(f"{name} {size}" for name, size in figures["file_bytes"].items())
    print(f"{path}: {figures['total_bytes']} bytes on disk ({files}); rows take "
          f"{figures['used_bytes']} bytes")
    for table, row in figures["tables"].items():
        span = (f", {_local(row['oldest'])} .. {_local(row['newest'])}" if row["rows"] else "")
        print(f"  {table:<8} {row['rows']:>9} rows{span}")
    return EX_OK


def _local(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))


def add_commands(sub: Any, common: argparse.ArgumentParser, socket_path: SocketPath) -> None:
    report = sub.add_parser("report", parents=[common],
                            help="report a job's start or end to the daemon")
    report.add_argument("job", help="the job's name")
    report.add_argument("verb", choices=("start", "ok", "fail"),
                        help="start: a run began; ok, fail: how it ended")
    report.add_argument("--message", "-m", help="a short text kept with the report")
    report.add_argument("--exit-code", type=exit_status, help="the job's exit status (0-255)")
    report.add_argument("--run", help="run id pairing this report with its start")
    report.set_defaults(func=lambda args: cmd_report(args, socket_path))
    wrap = sub.add_parser("exec", parents=[common],
                          help="run a job's command and report its start, end and output")
    wrap.add_argument("job", help="the job's name")
    wrap.add_argument("--user", help="run the command as this user (zelador exec runs as root)")
    wrap.add_argument("--state-dir", default=None,
                      help="whose spool/ keeps reports while zelador is down "
                           "($STATE_DIRECTORY or /var/lib/zelador)")
    wrap.add_argument("argv", nargs="*", metavar="-- COMMAND ARGS",
                      help="the command to run and its arguments, after --")
    wrap.set_defaults(func=lambda args: cmd_exec(args, socket_path))
    jobs = sub.add_parser("jobs", parents=[common],
                          help="the jobs, their last run and next expected; exit 3 on a problem")
    jobs.add_argument("--json", action="store_true", help="JSON instead of text")
    jobs.set_defaults(func=lambda args: cmd_jobs(args, socket_path))
    history = sub.add_parser("history", parents=[common],
                             help="events of programs and jobs from the history, newest last")
    history.add_argument("name", nargs="?", help="only this program, job or check")
    history.add_argument("--since", default=None, help="e.g. 1d, 2h, 30m (default: all)")
    history.add_argument("--kind", action="append", default=[],
                         help="only these event kinds (e.g. exited,job_failed); repeatable")
    history.add_argument("--limit", type=int, default=None,
                         help="only the newest N events (default: all since --since, else 1000)")
    history.add_argument("--json", action="store_true", help="JSON instead of text")
    history.add_argument("--stats", action="store_true",
                         help="the history's size in bytes, rows and time span per table")
    history.add_argument("--backup", metavar="FILE",
                         help="copy the history to FILE (a new file, mode 0600) with SQLite's "
                              "online backup, safe while zelador runs")
    history.add_argument("--state-dir", default=None,
                         help="where history.db is ($STATE_DIRECTORY or /var/lib/zelador)")
    history.set_defaults(func=cmd_history)
