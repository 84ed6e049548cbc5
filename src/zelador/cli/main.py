"""`zelador` subcommands: parse, call, print. Exit codes (sysexits style):

    0   ok (status/check: every watched program is running; jobs: none failed)
    1   runtime error
    3   status/check: something watched is not running; jobs: a job is FAIL, TIMEOUT or MISSED;
        checks: a check is failing
    64  usage error
    69  the daemon cannot be reached, or another zelador holds the lock
    78  the config is wrong or unsafe
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from typing import TYPE_CHECKING, NoReturn

from zelador import __version__
from zelador.cli.alerts import add_commands as add_alert_commands
from zelador.cli.jobs import add_commands as add_job_commands
from zelador.cli.jobs import state_dir
from zelador.cli.names import add_command as add_names_command
from zelador.cli.reload import add_command as add_reload_command
from zelador.errors import (
    EX_CONFIG,
    EX_DOWN,
    EX_OK,
    EX_USAGE,
    ControlError,
    UsageError,
    ZeladorError,
)
from zelador.runtime.control import ask

if TYPE_CHECKING:
    from zelador.config.model import Config
    from zelador.runtime.daemon import Daemon

# The daemon, the YAML reader, psutil and the unit renderer are imported by the commands that
# use them: `zelador history`, `report` and `exec` start in a fraction of the time.
DEFAULT_EXE = "/usr/bin/zelador"  # systemd/units.py has the same; a test holds them equal
DEFAULT_PATH = "/etc/zelador/zelador.yaml"  # config/model.py has the same; a test holds them equal


def load_config(path: str, **options: bool) -> Config:
    from zelador.config.reader import load_config as read

    return read(path, **options)


def runtime_dir(args: argparse.Namespace) -> str:
    return str(args.runtime_dir or os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
               or "/run/zelador")


def socket_path(args: argparse.Namespace, config: Config | None = None) -> str:
    if args.socket:
        return str(args.socket)
    if config is None:
        try:
            config = load_config(args.config, check_files=False)
        except ZeladorError:
            config = None
    if config is not None and config.control.socket:
        return config.control.socket
    return os.path.join(runtime_dir(args), "control.sock")


class Lock:
    """What a daemon (or a check run) holds for its life: an abstract socket named after the
    runtime folder (nothing on disk, so nothing a user could plant a link at), and
    `zelador.lock` in that folder when the folder is safe (opened with O_NOFOLLOW, mode 0600)."""

    def __init__(self, sock: socket.socket, fd: int | None, problem: str) -> None:
        self.sock = sock
        self.fd = fd
        self.problem = problem  # why the runtime folder is not used ("" when it is)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.sock.close()


def take_lock(folder: str, mode: int = 0o700) -> Lock | None:
    """The lock; None if another zelador holds it. An unsafe runtime folder is not used (the
    lock is then the abstract socket alone, and `Lock.problem` says why, in one line)."""
    from zelador.store.files import open_private, prepare_dir

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(b"\0zelador-lock:" + hashlib.sha256(
            os.path.realpath(folder).encode()).hexdigest()[:40].encode())
    except OSError:  # EADDRINUSE: it is taken
        sock.close()
        return None
    try:
        prepare_dir(folder, mode)
        fd = open_private(os.path.join(folder, "zelador.lock"), os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        return Lock(sock, None, f"not using runtime folder {folder} (no lock file there, no "
                                f"control socket): {exc}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        sock.close()
        return None
    return Lock(sock, fd, "")


def use_scopes(choice: str) -> bool:
    """Run scripts in transient scopes when systemd is PID 1 and we may ask it to."""
    from zelador.config.host import running_as_root

    if choice != "auto":
        return choice == "yes"
    return (os.path.isdir("/run/systemd/system") and running_as_root()
            and shutil.which("systemd-run") is not None)


def build_daemon(args: argparse.Namespace, config: Config, *, once: bool,
                 lock: Lock | None = None) -> Daemon:
    from zelador.events import Event
    from zelador.programs.launcher import Launcher
    from zelador.runtime.control import ControlServer
    from zelador.runtime.daemon import Daemon
    from zelador.store import history, state
    from zelador.store.files import prepare_dir
    from zelador.systemd.journal import open_journal

    logs = args.logs_dir or os.environ.get("LOGS_DIRECTORY", "").split(":")[0] or "/var/log/zelador"
    journal = open_journal(args.log_target, logs)
    from zelador.systemd.shutdown import own_unit, scopes_before

    launcher = Launcher(output_for=journal.output_for, output_where=journal.where_output_goes,
                        use_scopes=use_scopes(args.scopes),
                        stop_after=scopes_before(own_unit()))
    control = None
    if lock is not None and lock.problem:  # supervision goes on: no socket, `zelador status`
        journal.emit(Event("degraded", lock.problem, priority=3))  # cannot reach us
    elif not once:
        try:
            control = ControlServer(socket_path(args, config), config.control.group)
        except OSError as exc:
            journal.emit(Event("degraded", f"no control socket at {socket_path(args, config)} "
                               f"(`zelador status` cannot reach this zelador): {exc}",
                               priority=3))
    folder: str | None = None if once else state_dir(args)
    if folder is not None:
        try:
            prepare_dir(folder, 0o700)
        except OSError as exc:
            journal.emit(Event("degraded", f"not using state folder {folder} (no history, no "
                               f"alerts, nothing kept across a restart): {exc}", priority=3))
            folder = None
    return Daemon(config, journal=journal, launcher=launcher, control=control, once=once,
                  proc_events=args.proc_events == "auto",
                  state_file=None if folder is None else os.path.join(folder, state.FILE),
                  history_file=None if folder is None else os.path.join(folder, history.FILE),
                  spool_dir=None if folder is None else os.path.join(folder, "spool"),
                  alerts_file=None if folder is None else os.path.join(folder, "alerts.db"))


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config, host_checks=False)  # host problems: per program, at launch
    lock = take_lock(runtime_dir(args), 0o711 if config.control.group else 0o700)
    if lock is None:
        raise ControlError(f"another zelador already runs with {runtime_dir(args)} "
                           "(see `zelador status`)")
    daemon = build_daemon(args, config, once=False, lock=lock)
    try:
        return daemon.run()
    finally:
        if daemon.control is not None:
            daemon.control.close()
        lock.close()


def cmd_check(args: argparse.Namespace) -> int:
    from zelador.programs.view import all_running, render

    config = load_config(args.config, host_checks=False)
    try:  # a running daemon does the work (wherever its socket is): report what it sees
        reply = ask(socket_path(args, config), {"cmd": "status"}, timeout=5.0)
    except ControlError:
        reply = None
    if reply is not None:
        print(render(reply))
        return EX_OK if all_running(reply) else EX_DOWN
    lock = take_lock(runtime_dir(args))
    if lock is None:
        raise ControlError(f"a zelador holds the lock in {runtime_dir(args)} but does not answer "
                           f"on {socket_path(args, config)}")
    try:
        daemon = build_daemon(args, config, once=True, lock=lock)
        daemon.run()
        states = daemon.supervisor.group.states.values()
        for state in states:
            print(f"{state.name}: {state.phase.value}"
                  + (f" (pid {state.instance.pid})" if state.instance else "")
                  + (f": {state.reason}" if state.reason else ""))
        return EX_OK if all(s.phase.value in ("RUNNING", "WAITING") for s in states) else EX_DOWN
    finally:
        lock.close()


def warn_host_problems(config: Config) -> tuple[str, ...]:
    """Print one warning per problem this machine has with the config's programs."""
    for line in config.warnings:
        print(f"zelador: warning: {line}", file=sys.stderr)
    return config.warnings


def cmd_validate(args: argparse.Namespace) -> int:
    from zelador.config.overlap import overlapping_matches, pidfile_only

    config = load_config(args.config, host_checks=False)
    problems = warn_host_problems(config)
    names = ", ".join(config.names)
    held = f"; {len(problems)} cannot start on this machine yet (see warnings)" if problems else ""
    print(f"{config.path}: ok ({len(config.programs)} programs: {names}){held}")
    overlaps = overlapping_matches(config) + pidfile_only(config)
    for line in overlaps:
        print(f"zelador: warning: {config.path}: {line}", file=sys.stderr)
    from zelador.config import starters

    root = os.environ.get("ZELADOR_VENDOR_ROOT", "/")
    for starter in starters.find(config, root):  # the vendor's own starters: what will happen
        print(f"zelador: note: {starters.advice(config, starter, root)}", file=sys.stderr)
    return EX_CONFIG if args.strict and (problems or overlaps) else EX_OK


def cmd_units(args: argparse.Namespace) -> int:
    from zelador.systemd.units import render_units

    config = load_config(args.config, check_files=False)
    units = render_units(config, os.path.abspath(args.config), args.exe)
    if not args.output:
        for name, text in units.items():
            print(f"# ---- {name} ----\n{text}")
        return EX_OK
    os.makedirs(args.output, exist_ok=True)
    for name, text in units.items():
        path = os.path.join(args.output, name)
        with open(path + ".tmp", "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)
        print(f"wrote {path}")
    print("then: systemctl daemon-reload (and `systemctl enable --now zelador-check.timer` "
          "for the periodic check)", file=sys.stderr)
    return EX_OK


def cmd_status(args: argparse.Namespace) -> int:
    from zelador.programs.view import all_running, render

    reply = ask(socket_path(args), {"cmd": "status"})
    print(json.dumps(reply, indent=2) if args.json else render(reply))
    return EX_OK if all_running(reply) else EX_DOWN


def cmd_checks(args: argparse.Namespace) -> int:
    from zelador.programs.view import check_lines

    checks = ask(socket_path(args), {"cmd": "checks"})["checks"]
    if args.json:
        print(json.dumps(checks, indent=2))
    elif not checks:
        print("no checks in the config (programs.NAME.health, .resources, checks:, system:)")
    else:
        print("\n".join(check_lines(checks)))
    return EX_DOWN if any(c["state"] == "FAILING" for c in checks) else EX_OK


def cmd_fleet(args: argparse.Namespace) -> int:
    from zelador.cli.fleet import MqttSource, ZooKeeperSource, run_fleet
    from zelador.config.durations import parse_duration

    hosts, path, url, topic = args.zookeeper, args.path, args.mqtt, args.topic
    if hosts is not None and url is not None:
        raise UsageError("give --mqtt or --zookeeper, not both")
    if topic is not None:
        from zelador.fleet.topics import valid_topic

        if not valid_topic(topic):
            raise UsageError(f"--topic {topic!r}: topic levels of letters, digits, _ . - (no "
                             "wildcards, no leading /)")
    login = None
    if hosts is None and url is None:  # from the config (run on a terminal, or with -c on a desk)
        config = load_config(args.config, check_files=False)
        if config.fleet.mqtt:
            from zelador.fleet.mqtt import Login

            login = Login.of(config.fleet)
            topic = topic or config.fleet.topic
        elif config.fleet.zookeeper:
            hosts = config.fleet.zookeeper
            path = path or config.fleet.path
        else:
            raise UsageError(f"no fleet.mqtt or fleet.zookeeper in {args.config}: give --mqtt "
                             "URL or --zookeeper HOST:PORT,...")
    try:
        stale = parse_duration(args.stale)
    except ValueError as exc:
        raise UsageError(f"--stale: {exc}") from None
    source: MqttSource | ZooKeeperSource
    if login is not None or url is not None:
        if login is None:
            from zelador.fleet.mqtt import Login
            from zelador.fleet.topics import broker_address

            try:
                broker_address(url)
            except ValueError as exc:
                raise UsageError(f"--mqtt: {exc}") from None
            login = Login(url, username=args.username, password_file=args.password_file,
                          ca_file=args.ca_file)
        source = MqttSource(login, topic or "zelador", stale_after=stale)
    else:
        source = ZooKeeperSource(hosts, path or "/zelador")
    return run_fleet(source, down_only=args.down, watch=args.watch, as_json=args.json,
                     summary=args.summary, config_not=args.config_not)


def cmd_control(args: argparse.Namespace) -> int:
    path = socket_path(args)
    before = ask(path, {"cmd": args.command, "program": args.program})["program"]
    if args.no_wait or (args.command == "start" and before["state"] == "RUNNING"):
        print(f"{args.program}: {before['state']}")
        return EX_OK
    deadline = time.monotonic() + args.timeout
    while True:
        prog = next(p for p in ask(path, {"cmd": "status"})["programs"]
                    if p["name"] == args.program)
        done = (prog["state"] == "STOPPED" if args.command == "stop" else
                prog["state"] == "RUNNING" and (args.command == "start" or
                                                prog["pid"] != before["pid"] or
                                                before["state"] != "STOPPING"))
        if done or prog["state"] in ("FATAL", "BACKOFF") or time.monotonic() > deadline:
            pid = f" (pid {prog['pid']})" if prog["pid"] else ""
            print(f"{args.program}: {prog['state']}{pid}"
                  + (f": {prog['reason']}" if prog["reason"] else ""))
            return EX_OK if done else EX_DOWN
        time.sleep(0.05)


def cmd_demo(args: argparse.Namespace) -> int:
    from zelador.cli.demo import lay_out  # only the demo needs it

    args.state_dir = args.state_dir or os.path.join(args.dir, "state")  # not the real one
    config_path = lay_out(args.dir, web=args.web_listen, intake=args.intake_listen,
                          state=args.state_dir)
    args.config = config_path
    args.runtime_dir = os.path.join(args.dir, "run")
    args.logs_dir = os.path.join(args.dir, "log")
    intake_host, _, intake_port = args.intake_listen.rpartition(":")
    args.log_target = "stderr"
    print(f"""zelador demo: a stand-in SEFAZ-CE MFE is laid out in {args.dir}
  config:          {config_path}
  vendor scripts:  {args.dir}/opt/sefaz/cco/bin/runcco-ser.sh, runcco-mon.sh (nohup ... &)

In another terminal, try:
  pkill -9 -x Comunicador        # comes back within milliseconds; Monitor is restarted once
                                 # (a process killed less than restart.stable, 10s, after
                                 #  its start counts as a failing start and backs off 1s,
                                 #  2s, 4s ...: a crash loop is not restarted flat out)
  zelador status --socket {args.runtime_dir}/control.sock
  zelador restart monitor --socket {args.runtime_dir}/control.sock
  bash -c 'exec 3<>/dev/tcp/{intake_host}/{intake_port}; echo "#id=25;state=OK;name=fechamento" >&3;
           head -1 <&3'                                              # a job reports: OK
  zelador exec backup --socket {args.runtime_dir}/control.sock -- sh -c 'echo saved; exit 1'
  zelador jobs --socket {args.runtime_dir}/control.sock              # fechamento OK, backup FAIL
  zelador history --state-dir {args.state_dir}
  open http://{args.web_listen}/ in a browser    # the status page (and /metrics, /api/status)
  tail -f {args.dir}/alerts.log    # alerts: the failed backup; kill Comunicador 3 times: flapping
  zelador alerts --state-dir {args.state_dir}
Ctrl-C stops zelador; Comunicador and Monitor are left running, as they always are
(remove them with: pkill -x Comunicador; pkill -x Monitor).
""", file=sys.stderr, flush=True)
    return cmd_run(args)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 (EX_USAGE) as documented, not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"zelador: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="zelador", description="Keeps vendor daemons alive.",
                 epilog="A command's options: zelador COMMAND --help. Everything: man zelador; "
                        "every config key: man zelador.yaml.")
    top.add_argument("--version", action="version", version=f"zelador {__version__}")
    common = Parser(add_help=False)
    common.add_argument("-c", "--config", default=os.environ.get("ZELADOR_CONFIG", DEFAULT_PATH),
                        help=f"config file (default {DEFAULT_PATH})")
    common.add_argument("--socket", default=os.environ.get("ZELADOR_SOCKET"),
                        help="control socket (default: control.socket, or RUNTIME_DIR/control.sock)")
    common.add_argument("--runtime-dir", default=None,
                        help="lock and socket folder (default $RUNTIME_DIRECTORY or /run/zelador)")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def daemon_options(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--log-target", choices=("auto", "journal", "stderr"), default="auto",
                         help="auto: journald when stderr is connected to it")
        cmd.add_argument("--logs-dir", default=None,
                         help="where script output goes when not logging to journald")
        cmd.add_argument("--scopes", choices=("auto", "yes", "no"), default="auto",
                         help="run each script in its own systemd scope (auto: under systemd)")
        cmd.add_argument("--state-dir", default=None,
                         help="what survives a restart of zelador ($STATE_DIRECTORY or "
                              "/var/lib/zelador)")
        cmd.add_argument("--proc-events", choices=("auto", "no"), default="auto",
                         help="notice new processes by the kernel's exec events (auto: as root)")

    run = sub.add_parser("run", parents=[common], help="supervise (the service's main command)")
    daemon_options(run)
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", parents=[common],
                           help="one pass: start what is missing, exit 0 only if all run")
    daemon_options(check)
    check.set_defaults(func=cmd_check)
    validate = sub.add_parser("validate", parents=[common],
                              help="check the config; exit 0 (warnings on stderr) or 78")
    validate.add_argument("--strict", action="store_true",
                          help="exit 78 on warnings too (a missing script, overlapping matches)")
    validate.set_defaults(func=cmd_validate)
    status = sub.add_parser("status", parents=[common], help="what the running daemon sees")
    status.add_argument("--json", action="store_true", help="JSON instead of text")
    status.set_defaults(func=cmd_status)
    checks = sub.add_parser("checks", parents=[common],
                            help="every check: state, last value, last result; exit 3 if one fails")
    checks.add_argument("--json", action="store_true", help="JSON instead of text")
    checks.set_defaults(func=cmd_checks)
    fleet = sub.add_parser("fleet", parents=[common],
                           help="every terminal in MQTT or ZooKeeper and what is down on it; exit 3 "
                                "if anything is")
    fleet.add_argument("--mqtt", metavar="URL",
                       help="mqtt[s]://HOST[:PORT] (default: fleet.mqtt, else fleet.zookeeper)")
    fleet.add_argument("--topic", help="the fleet's MQTT topic (default: fleet.topic, zelador)")
    fleet.add_argument("--username", help="with --mqtt: the broker login")
    fleet.add_argument("--password-file", metavar="FILE", help="with --mqtt: its password")
    fleet.add_argument("--ca-file", metavar="FILE",
                       help="with --mqtt: the CA of an mqtts:// broker (default: the system's)")
    fleet.add_argument("--stale", default="15m", metavar="SPAN",
                       help="MQTT: a state not refreshed for this long is MISSING (default 15m)")
    fleet.add_argument("--zookeeper", help="HOST:PORT,... (default: fleet.zookeeper)")
    fleet.add_argument("--path", help="the fleet's znode (default: fleet.path, /zelador)")
    fleet.add_argument("--summary", action="store_true",
                       help="counts by state and the commonest problems across the fleet")
    fleet.add_argument("--down", action="store_true", help="only terminals with a problem")
    fleet.add_argument("--watch", action="store_true", help="follow changes until Ctrl-C")
    fleet.add_argument("--json", action="store_true", help="JSON instead of text")
    fleet.add_argument("--config-not", metavar="SHA",
                       help="only terminals whose config's sha256 (or its first characters, as "
                            "`zelador status` shows) is not SHA; exit 3 if any")
    fleet.set_defaults(func=cmd_fleet)
    units = sub.add_parser("units", parents=[common],
                           help="render the systemd units for this config (print, or --output DIR)")
    units.add_argument("--output", metavar="DIR",
                       help="write the files here (e.g. /etc/systemd/system) instead of printing")
    units.add_argument("--exe", default=DEFAULT_EXE, help=f"zelador's path in ExecStart= ({DEFAULT_EXE})")
    units.set_defaults(func=cmd_units)
    for verb in ("start", "stop", "restart"):
        cmd = sub.add_parser(verb, parents=[common], help=f"{verb} a program and wait for it")
        cmd.add_argument("program", help="a program named in the config")
        cmd.add_argument("--no-wait", action="store_true", help="return at once")
        cmd.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
        cmd.set_defaults(func=cmd_control)
    add_job_commands(sub, common, socket_path)
    add_alert_commands(sub, common, lambda path: load_config(path, host_checks=False), state_dir)
    add_names_command(sub, common)
    add_reload_command(sub, common, socket_path)
    demo = sub.add_parser("demo", parents=[common],
                          help="lay out a stand-in MFE and supervise it in the foreground")
    demo.add_argument("--dir", default="/tmp/zelador-demo",
                      help="where the stand-in MFE and its state go (/tmp/zelador-demo)")
    demo.add_argument("--web-listen", metavar="HOST:PORT",
                      default=os.environ.get("ZELADOR_DEMO_WEB", "127.0.0.1:9813"),
                      help="the status page ($ZELADOR_DEMO_WEB, 127.0.0.1:9813)")
    demo.add_argument("--intake-listen", metavar="HOST:PORT",
                      default=os.environ.get("ZELADOR_DEMO_INTAKE", "127.0.0.1:2020"),
                      help="the job report port ($ZELADOR_DEMO_INTAKE, 127.0.0.1:2020)")
    daemon_options(demo)
    demo.set_defaults(func=cmd_demo)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "exec" in argv and "--" in argv and argv.index("exec") < argv.index("--"):
        # `zelador exec JOB [--user U] -- COMMAND ARGS...`: the command's own options are not ours
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = parser().parse_args(argv)
    if command:
        args.argv = command
    try:
        return int(args.func(args))
    except ZeladorError as exc:
        print(f"zelador: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
