"""zelador(1) and zelador.yaml(5), rendered in roff from the parser and the config key table.

    python3 -m zelador.cli.manpages OUTDIR [--example config/zelador.yaml]

writes OUTDIR/zelador.1, OUTDIR/zelador.yaml.5 and OUTDIR/bash-completion/zelador; the
package build runs it, so the pages describe exactly the commands and keys of the code shipped.
The prose around the generated parts is here; the facts come from cli.main.parser(),
config.keys.SECTIONS, errors.EXIT_STATUS and systemd.journal.MESSAGE_IDS.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from zelador import __version__
from zelador.cli.commands import Command, Option, common_options, walk
from zelador.config.keys import SECTIONS, Section
from zelador.errors import EXIT_STATUS
from zelador.systemd.journal import MESSAGE_IDS

# More to say about a command than its one-line help; every other command has just that line.
COMMAND_TEXT = {
    "run": "Supervise: the service's main command (zelador.service runs `zelador run`). Reads the "
           "config, adopts what already runs, starts what is missing, restarts what exits, and "
           "reloads the config on SIGHUP (a broken file is refused and the running config "
           "stays). Tells systemd it is ready and alive (sd_notify, watchdog) when run by it.",
    "check": "One pass for zelador-check.timer or cron: start what is missing, wait for it, exit 0 "
             "only if every program runs. Does nothing while a `zelador run` holds the lock.",
    "validate": "Read the config as `zelador run` would and print every error as "
                "FILE:LINE: KEY: what; exit 0, or 78 on an error. Problems of this machine "
                "(a start script missing or writable by others, an unknown user) are warnings "
                "(exit 78 with --strict).",
    "status": "Ask the running daemon what it sees: each program's state, pid, uptime, restarts "
              "and last exit, the jobs and the checks.",
    "units": "Render zelador.service, zelador-check.service and .timer, and a service and timer "
             "per job with run:, for this config.",
    "report": "Tell the daemon that a run of JOB started or ended, as the TCP report port "
              "would; reports made while zelador is down are kept in the spool.",
    "exec": "Run COMMAND as a run of JOB: report its start, its end with the exit status and the "
            "last 10 kB of output, and exit with its status.",
    "history": "Read the history store (history.db): events of programs, jobs and checks, and "
               "the runs of jobs. Works while zelador is stopped.",
    "alerts": "Open incidents and the alert outbox (pending, sent, failed, with the last error), "
              "read from alerts.db. `zelador alerts test [CHANNEL]` sends a test message from "
              "this process and prints each server's answer.",
    "fleet": "Read every terminal's state from ZooKeeper: UP, DOWN (and what), or MISSING; "
             "exit 3 if any is not UP.",
    "demo": "Lay out a stand-in MFE (Comunicador, Monitor, their nohup start scripts) under "
            "--dir and supervise it in the foreground, with jobs, alerts to a file and the status "
            "page. Needs no root.",
}

ENVIRONMENT = (
    ("ZELADOR_CONFIG", "the config file when -c is not given"),
    ("ZELADOR_SOCKET", "the control socket when --socket is not given"),
    ("RUNTIME_DIRECTORY", "the lock and socket folder (systemd sets it; else /run/zelador)"),
    ("STATE_DIRECTORY", "state.json, history.db, alerts.db and the report spool (else "
                        "/var/lib/zelador)"),
    ("LOGS_DIRECTORY", "script output when not logging to journald (else /var/log/zelador)"),
    ("NOTIFY_SOCKET, WATCHDOG_USEC", "set by systemd: zelador reports READY, STATUS and "
                                     "watchdog pings"),
    ("JOURNAL_STREAM", "set by systemd: --log-target auto then logs to journald"),
)

FILES = (
    ("/etc/zelador/zelador.yaml", "the config, see zelador.yaml(5)"),
    ("/etc/zelador/zelador.d/*.yaml", "drop-ins, read in name order after it and merged by "
                                      "name; a key set in two files is an error"),
    ("/run/zelador/control.sock", "the command socket (mode 0600)"),
    ("/var/lib/zelador/state.json", "counters and timers kept across restarts of zelador"),
    ("/var/lib/zelador/history.db", "events, job runs and reports (SQLite)"),
    ("/var/lib/zelador/alerts.db", "open incidents and the alert outbox (SQLite)"),
    ("/usr/lib/systemd/system/zelador.service", "the service; zelador-check.service and "
                                                "zelador-check.timer beside it"),
    ("/usr/lib/systemd/catalog/zelador.catalog", "explanations for journalctl -x"),
    ("/usr/share/doc/zelador/", "the manual: configuration, operations, alerts, checks, web, "
                                "fleet"),
)

EXAMPLES = (
    ("Check an edited config, then apply it:",
     "zelador validate && systemctl reload zelador"),
    ("What runs, and what happened to Comunicador today:",
     "zelador status\njournalctl \\-u zelador ZELADOR_PROGRAM=comunicador \\-\\-since today"),
    ("Restart a program and wait until its new instance runs:", "zelador restart comunicador"),
    ("A backup job reporting through zelador:", "zelador exec backup \\-\\- /usr/local/bin/backup"),
    ("Send a test alert to one channel:", "zelador alerts test phone"),
    ("Terminals of the fleet with something down:",
     "zelador fleet \\-\\-zookeeper zk1:2181 \\-\\-down"),
)

# Snippets for zelador.yaml(5); a test reads each one with the config reader.
CONFIG_EXAMPLES = (
    ("Scheduled jobs", """\
jobs:
  fechamento: {id: 25, schedule: "30 2 * * *",
               timezone: America/Fortaleza, max_runtime: 20m}
  backup: {every: 1h, max_runtime: 10m,
           run: "/usr/local/bin/backup --quick"}
intake: {listen: "127.0.0.1:2020"}
history: {keep: 90d}
"""),
    ("Alerts", """\
alerts:
  remind_every: 4h
  channels:
    phone: {telegram: {token_file: /etc/zelador/telegram.token,
                       chat_id: "-100123", on_recovery: delete}}
    mail: {email: {host: smtp.example.net, port: 587, tls: starttls,
                   from: pos@example.net, to: [ops@example.net],
                   password_file: /etc/zelador/smtp.password}}
    hook: {webhook: {url: "http://127.0.0.1:8099/zelador", timeout: 5s}}
  rules:
    - {programs: [comunicador], events: [gave_up, flapping],
       channels: [phone, mail]}
    - {jobs: [fechamento], channels: [mail]}
"""),
    ("Checks", """\
programs:
  comunicador:
    match: {name: Comunicador}
    start: /opt/sefaz/cco/bin/runcco-ser.sh
    health: {http: "http://127.0.0.1:8098/", every: 1s, timeout: 1s,
             fails: 2}
    resources: {memory: {above: 500MB, for: 3 cycles, action: restart}}
checks:
  miners:
    every: 5s
    http: {url: "http://127.0.0.1:8097/api/workers", timeout: 2s}
    json: {items: data.workers, key: name, time: last_seen,
           stale_after: 10m, ignore_after: 8h}
system:
  disk_root: {disk: /, above: 90%}
  memory: {memory: used, above: 95%, for: 5 cycles}
"""),
    ("The status page and the fleet", """\
web: {listen: "127.0.0.1:9813"}
fleet: {zookeeper: "zk1:2181,zk2:2181,zk3:2181", path: /zelador}
"""),
)


# --- roff ----------------------------------------------------------------------------------


def esc(text: str, code: bool = True) -> str:
    """Text for a roff line: backslashes, minus signs and non-ASCII escaped; `code` in bold."""
    out = []
    for char in text:
        if char == "\\":
            out.append("\\e")
        elif char == "-":
            out.append("\\-")
        elif ord(char) > 127:
            out.append(f"\\[u{ord(char):04X}]")
        else:
            out.append(char)
    text = "".join(out)
    return re.sub(r"`([^`]+)`", r"\\fB\1\\fR", text) if code else text


def line(text: str) -> str:
    """A text line that roff does not take for a request."""
    return "\\&" + text if text[:1] in (".", "'") else text


def para(text: str) -> str:
    return ".PP\n" + line(esc(text))


def tagged(tag: str, text: str) -> str:
    return f".TP\n{line(tag)}\n{line(esc(text))}"


def literal(text: str) -> str:
    """A block shown as is (an example); a test holds its lines to 72 columns, so it fits 80."""
    body = [line(esc(row, code=False)) if row else "" for row in text.rstrip("\n").split("\n")]
    return "\n".join([".PP", ".nf", *body, ".fi"])


def header(name: str, section: int, date: str, title: str) -> str:
    return (f'.\\" Generated by zelador.cli.manpages from the code; do not edit.\n'
            f'.TH {name.upper()} {section} "{date}" "zelador {__version__}" "{title}"\n'
            ".nh\n.ad l")  # no hyphens in paths and field names; ragged right


def page_date() -> str:
    """The build's date (SOURCE_DATE_EPOCH, as dpkg sets it: reproducible), else today's."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    return time.strftime("%Y-%m-%d", time.gmtime(int(epoch) if epoch else None))


# --- zelador(1) ----------------------------------------------------------------------------


def _flags(option: Option) -> str:
    names = ", ".join(f"\\fB{esc(flag)}\\fR" for flag in option.flags)
    value = option.metavar if not option.choices else "{" + ",".join(option.choices) + "}"
    return names + (f" \\fI{esc(value)}\\fR" if option.takes_value else "")


def _synopsis(command: Command) -> str:
    words = [f"\\fBzelador {command.name}\\fR", "[\\fIOPTIONS\\fR]"]
    for pos in command.positionals:
        shown = f"\\fI{esc(pos.metavar)}\\fR" + ("..." if pos.many and "ARGS" not in pos.metavar
                                                  else "")
        words.append(f"[{shown}]" if pos.optional else shown)
    return " ".join(words)


def _option_help(option: Option) -> str:
    text = option.help
    if option.choices and not option.flags:
        text += f" ({', '.join(option.choices)})"
    return text


def zelador_1(top: argparse.ArgumentParser) -> str:
    common = common_options(top)
    commands = walk(top, tuple(o.dest for o in common))
    out = [header("zelador", 1, page_date(), "User Commands"),
           ".SH NAME", "zelador \\- keeps point\\-of\\-sale vendor daemons alive",
           ".SH SYNOPSIS", "\\fBzelador\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]", ".br",
           "\\fBzelador\\fR \\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR",
           ".SH DESCRIPTION",
           para("zelador is a process supervisor for point-of-sale terminals. It watches the "
                "processes listed in /etc/zelador/zelador.yaml (such as the SEFAZ-CE MFE "
                "driver's Comunicador and Monitor), notices at once when one exits, restarts it "
                "through its vendor start script, and writes every decision to the journal with "
                "structured fields. It also expects reports from scheduled jobs, runs health, "
                "resource and HTTP checks, sends alerts, serves a status page with Prometheus "
                "metrics, and can publish the terminal's state to ZooKeeper."),
           para("zelador.service runs `zelador run`; the other commands talk to it through its "
                "socket, read its stores, or work on the config alone."),
           ".SH COMMANDS"]
    for command in commands:
        out += [".SS " + _synopsis(command),
                line(esc(COMMAND_TEXT.get(command.name, command.help[:1].upper() +
                                          command.help[1:] + ".")))]
        for option in command.positionals:
            out.append(tagged(f"\\fI{esc(option.metavar)}\\fR", _option_help(option)))
        for option in command.options:
            out.append(tagged(_flags(option), _option_help(option)))
    out += [".SH COMMON OPTIONS", para("Every command takes these:")]
    out += [tagged(_flags(option), option.help) for option in common]
    out.append(tagged("\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "show the command's options and exit"))
    out += [".SH EXIT STATUS"]
    out += [tagged(f"\\fB{code}\\fR", meaning) for code, meaning in EXIT_STATUS]
    out += [".SH ENVIRONMENT"]
    out += [tagged(f"\\fB{esc(name)}\\fR", meaning) for name, meaning in ENVIRONMENT]
    out += [".SH FILES"]
    out += [tagged(f"\\fI{esc(path)}\\fR", meaning) for path, meaning in FILES]
    out += [".SH JOURNAL",
            para("Every event is a journal entry with ZELADOR_EVENT (its kind), ZELADOR_PROGRAM, "
                 "ZELADOR_JOB or ZELADOR_CHECK (its subject), a MESSAGE_ID explained by "
                 "`journalctl -x`, and fields of its own. The kinds:"),
            line(esc(", ".join(sorted(MESSAGE_IDS)) + "."))]
    out += [".SH EXAMPLES"]
    for what, command_text in EXAMPLES:
        out += [para(what), ".PP", ".RS 4", ".nf", command_text, ".fi", ".RE"]
    out += [".SH SEE ALSO",
            "\\fBzelador.yaml\\fR(5), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), "
            "\\fBsystemd.service\\fR(5), \\fBsystemd.timer\\fR(5)",
            para("The manual in /usr/share/doc/zelador/.")]
    return "\n".join(out) + "\n"


# --- zelador.yaml(5) -----------------------------------------------------------------------


def _section(section: Section) -> list[str]:
    out = [f".SS {esc(section.title)}" + (f" ({esc(section.path)})" if section.path else "")]
    if section.text:
        out.append(line(esc(section.text)))
    for key in section.keys:
        out.append(tagged(f"\\fB{esc(key.name)}\\fR (default: {esc(key.default)})", key.meaning))
    return out


def zelador_yaml_5(example: str) -> str:
    out = [header("zelador.yaml", 5, page_date(), "File Formats"),
           ".SH NAME", "zelador.yaml \\- what zelador keeps alive, and how",
           ".SH SYNOPSIS", "/etc/zelador/zelador.yaml",
           ".SH DESCRIPTION",
           para("The configuration of zelador(1), in YAML. Check an edited file with "
                "`zelador validate`, then apply it with `systemctl reload zelador`: a file that "
                "is invalid, or that a user other than root could change, is refused and the "
                "running config stays. Every error names FILE:LINE: KEY and says what is wrong; "
                "an unknown key is an error that suggests the nearest known one."),
           para("Durations use systemd's words: 500ms, 10s, 5m, 1h 30m, 7d (a bare number is "
                "seconds). Sizes name their unit: 500MB, 2GiB. Commands are a list, or a "
                "string split like a shell would; they run through /bin/sh -c only with "
                "`shell: true`, and their program must be an absolute path to a file only root "
                "can change."),
           para("In the key paths below, NAME stands for a name you choose (letters, digits, "
                "_ . -), FIGURE for one of a program's figures, and [] for an item of a list."),
           ".SH KEYS"]
    for section in SECTIONS:
        out += _section(section)
    out += [".SH EXAMPLE",
            para("The shipped file, for the SEFAZ-CE MFE driver:"), literal(example)]
    for title, snippet in CONFIG_EXAMPLES:
        out += [".SS " + esc(title), literal(snippet)]
    out += [".SH SEE ALSO", "\\fBzelador\\fR(1), \\fBsystemd.time\\fR(7), \\fBcrontab\\fR(5)",
            para("/usr/share/doc/zelador/configuration.md, alerts.md, checks.md, web.md, "
                 "fleet.md.")]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    from zelador.cli.completion import bash_completion
    from zelador.cli.main import parser

    args = argparse.ArgumentParser(prog="python3 -m zelador.cli.manpages")
    args.add_argument("output", help="the folder to write into")
    args.add_argument("--example", default=str(Path(__file__).resolve().parents[3] / "config" /
                                                 "zelador.yaml"),
                      help="the shipped config, quoted in zelador.yaml(5)")
    given = args.parse_args(argv)
    out = Path(given.output)
    out.mkdir(parents=True, exist_ok=True)
    top = parser()
    (out / "zelador.1").write_text(zelador_1(top), encoding="utf-8")
    example = Path(given.example).read_text(encoding="utf-8")
    (out / "zelador.yaml.5").write_text(zelador_yaml_5(example), encoding="utf-8")
    (out / "bash-completion").mkdir(exist_ok=True)
    (out / "bash-completion" / "zelador").write_text(bash_completion(top), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
