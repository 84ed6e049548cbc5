"""Every config key, its default and what it means: the one table the reader and zelador.yaml(5) use.

The reader accepts in a mapping exactly the keys its section lists here (`names()`), so a key
cannot be added to the reader without a line here, and the man page, rendered from this table,
cannot miss it. Pure data; nothing here reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    name: str
    default: str  # as the sysadmin would write it; "required" or "none" where there is none
    meaning: str


@dataclass(frozen=True)
class Section:
    path: str  # where the keys sit: "programs.NAME.restart"; "" for the top level
    title: str
    keys: tuple[Key, ...]
    text: str = ""  # a paragraph before the keys


_HTTP = (
    Key("url", "required", "the URL (http or https)"),
    Key("method", "GET", "GET, HEAD or POST"),
    Key("headers", "none", "extra request headers, a mapping of name to value"),
    Key("timeout", "the check's timeout", "the whole request: connect, send, every read"),
    Key("status", "any 2xx or 3xx", "the expected status code, or a list of them"),
    Key("body", "none", "a regular expression the body must match"),
)

_THRESHOLD = (
    Key("above", "required", "the threshold, in the figure's unit: 90%, 500MB or 2GiB (sizes "
        "need their unit), a count, a time span for uptime (7d)"),
    Key("for", "1 cycle", "N cycles (N samples in a row), X of Y cycles, or a span (5m, worked "
        "out from the sampling interval); a problem ends after as many good samples in a row"),
    Key("action", "alert", "alert (the event only), restart (a program's rule: through the "
        "program's engine) or command"),
    Key("command", "none", "with action: command, an argv run on failure and on recovery with "
        "ZELADOR_CHECK, ZELADOR_EVENT, ZELADOR_VALUE, ZELADOR_THRESHOLD set; 60s at most"),
)

SECTIONS: tuple[Section, ...] = (
    Section("", "Top level", (
        Key("interval", "10s", "the backstop scan of the process table. Exits are noticed at "
            "once (pidfd, and zelador reaps the daemons it started); as root on the host new "
            "processes are noticed when they exec, and the backstop then runs every "
            "max(interval, 60s)"),
        Key("programs", "required unless jobs is given", "the watched programs, by name "
            "(letters, digits, _ . -)"),
        Key("control", "see below", "the command socket (only a restart of zelador applies a "
            "change; a reload keeps the running one and says so)"),
        Key("check", "see below", "the periodic zelador check (zelador-check.timer)"),
        Key("jobs", "none", "scheduled jobs that report to zelador"),
        Key("intake", "see below", "the TCP port jobs report to"),
        Key("history", "see below", "how long the history store keeps rows"),
        Key("alerts", "none", "alert channels and rules"),
        Key("checks", "none", "HTTP checks not tied to a program"),
        Key("system", "none", "rules on the machine's own figures"),
        Key("web", "off", "the status page, /api/status and /metrics"),
        Key("fleet", "off", "this terminal's state in ZooKeeper and/or MQTT"),
    )),
    Section("control", "The command socket", (
        Key("socket", "$RUNTIME_DIRECTORY/control.sock", "the CLI's socket (mode 0600)"),
        Key("group", "none", "a group whose members may use the socket too (mode 0660): "
            "status, checks, jobs, report, exec and start/stop/restart of a watched program, "
            "nothing else; each client's credentials are checked again, and who asked for a "
            "start, stop or restart is journaled"),
    )),
    Section("check", "The periodic check", (
        Key("every", "1m", "how often zelador-check.timer runs zelador check "
            "(see zelador units)"),
        Key("timeout", "longest start_timeout + 30s", "TimeoutStartSec= of "
            "zelador-check.service; must be longer than every start_timeout"),
    )),
    Section("programs.NAME", "A watched program", (
        Key("match", "required", "how to recognise its process (below); the instance is the "
            "top-most match, matches below it are its family, not duplicates"),
        Key("start", "required", "the start command: a list, or a string split like a shell "
            "would; the program must be an absolute path"),
        Key("shell", "false", "run start and stop.command through /bin/sh -c"),
        Key("start_timeout", "30s", "the script must return and the process appear within "
            "this; a script still running then is killed with everything it started"),
        Key("stop", "{signal: TERM, timeout: 10s}", "how to stop it (below)"),
        Key("restart", "see below", "delays, backoff and the burst limit"),
        Key("part_of", "none", "program(s): when one comes back after an exit, restart this one "
            "once, after it"),
        Key("after", "none", "program(s): do not start this one while they are still starting"),
        Key("user", "root", "run the scripts as this user; session: in the active graphical "
            "session, as its user, with its display (a tray program such as the MFE's Monitor)"),
        Key("group", "root", "run the scripts with this group"),
        Key("session_grace", "5s", "user: session: after a login, wait this long before looking, "
            "so a copy the desktop's autostart starts is adopted, not doubled"),
        Key("environment", "none", "extra variables for the scripts, a mapping"),
        Key("working_directory", "/", "the scripts' working directory"),
        Key("duplicates", "report", "report: an event when a second instance runs; stop: stop "
            "extra instances, newest first, with the stop signal, SIGKILL after stop.timeout"),
        Key("family", "stop", "stop: the program is its whole tree: stop, restart and a "
            "duplicate's stop act on all of it, and what a dead instance left behind (orphaned "
            "workers) is stopped before the restart; keep: zelador acts on the main process only"),
        Key("health", "none", "is it answering (below)"),
        Key("resources", "none", "thresholds on its figures (below)"),
    )),
    Section("programs.NAME.match", "Recognising the process", (
        Key("name", "none", "the process name (comm, at most 15 characters)"),
        Key("exe", "none", "the executable's absolute path"),
        Key("cmdline", "none", "a regular expression searched in the argv joined by spaces"),
        Key("pidfile", "none", "a pid file, followed as it changes (an nginx binary upgrade is "
            "adopted, not restarted)"),
        Key("user", "none", "the process's user (only with another key)"),
    ), "All keys given must hold."),
    Section("programs.NAME.stop", "Stopping", (
        Key("signal", "TERM", "the signal that asks it to stop"),
        Key("timeout", "10s", "SIGKILL after this"),
        Key("command", "none", "a command that stops it, instead of the signal"),
    )),
    Section("programs.NAME.restart", "Restarting", (
        Key("delay", "0s", "wait before restarting a program that had been running fine"),
        Key("max_delay", "5m", "failed starts back off 1s, 2s, 4s ... up to this"),
        Key("stable", "10s", "a process that lived less than this (or, with a health check, "
            "whose check never passed) counts as a failed start; after failures it is back "
            "only once it ran this long and passed its health check"),
        Key("burst", "10 in 2m", "more starts than this in the window, counted since it last ran "
            "longer than stable: FATAL. A program that runs stably and then dies is always "
            "restarted at once"),
        Key("then", "retry every 5m", "FATAL is retried on this slow timer, forever"),
        Key("adopt_within", "2s", "when an instance dies and its parent (a launcher's shell loop, "
            "neither zelador nor init) still runs, wait this long for that parent to start the "
            "next one, and adopt it instead of running the start script (0s: never wait)"),
    )),
    Section("programs.NAME.health", "Is it answering", (
        Key("http", "none", "a URL, or a mapping with the keys of an HTTP request (below)"),
        Key("tcp", "none", "HOST:PORT that must accept a connection"),
        Key("command", "none", "an argv; exit 0 is healthy (its session is killed at the "
            "timeout)"),
        Key("every", "10s", "how often, while the program is RUNNING"),
        Key("timeout", "5s", "the whole probe; at most 5m"),
        Key("fails", "3", "consecutive failures before the action"),
        Key("start_after", "10s", "after a start, failures are not counted for this long"),
        Key("action", "restart", "restart (through the program's engine: part_of, burst limit, "
            "backoff apply) or alert"),
    ), "Exactly one of http, tcp and command."),
    Section("programs.NAME.health.http", "An HTTP request", _HTTP,
            "Also the http key of checks.NAME."),
    Section("programs.NAME.resources", "Thresholds on a program's figures", (
        Key("every", "10s", "the sampling interval"),
        Key("cpu", "none", "% of one core over the sampling interval"),
        Key("memory", "none", "resident memory (RSS)"),
        Key("pss", "none", "proportional set size (reads smaps: costlier)"),
        Key("threads", "none", "threads"),
        Key("fds", "none", "open file descriptors"),
        Key("children", "none", "processes below it"),
        Key("uptime", "none", "how long the instance has run"),
    ), "Each figure takes a rule (below); only programs with rules are sampled."),
    Section("programs.NAME.resources.FIGURE", "A program's rule", (
        *_THRESHOLD,
        Key("children", "false", "cpu and memory: add the processes below it"),
        Key("below", "none", "children only: fewer processes below it than this is the problem "
            "(children: {below: 2, action: restart}); with or instead of above"),
    )),
    Section("jobs.NAME", "A scheduled job", (
        Key("schedule", "none", "a five-field cron expression (quote it), or @hourly, @daily, "
            "@weekly, @monthly, @yearly"),
        Key("timezone", "the machine's", "the cron's zone (America/Fortaleza)"),
        Key("every", "none", "instead of schedule: a run is expected this long after the last "
            "start"),
        Key("max_runtime", "1h", "a run that reported its start and not its end within this: "
            "TIMEOUT"),
        Key("grace", "10m", "no run started within this of the expected moment: MISSED"),
        Key("max_open_runs", "100", "runs started and not ended at once (1-1000); one more "
            "START is answered ERR too many open runs"),
        Key("id", "none", "a numeric id a report may name the job by"),
        Key("run", "none", "a command for the job's own systemd timer (zelador units renders "
            "it)"),
        Key("shell", "false", "run `run` through /bin/sh -c"),
        Key("user", "root", "who `run` runs as"),
    ), "One of schedule and every."),
    Section("intake", "The report port", (
        Key("listen", "127.0.0.1:2020", "ADDRESS:PORT, opened only when jobs exist; off closes "
            "it. An address that is not loopback needs allow"),
        Key("allow", "none (loopback only)", "networks that may report ([10.0.0.0/8])"),
        Key("max_connections", "256", "clients connected at once; when all are taken the one "
            "that sent no whole line for longest gives way, else ERR busy"),
        Key("idle_timeout", "10s", "a client that sends nothing for this long is closed; a line "
            "must be whole within this of its first byte"),
    )),
    Section("history", "The history store", (
        Key("keep", "90d", "rows older than this are deleted"),
        Key("max_rows", "1000000", "per table (events, runs, reports); the oldest go first"),
        Key("keep_bytes", "none", "a size cap, e.g. 50MB (K, M, G: powers of 1024): past it the "
            "oldest rows go first; the file stays about this size (freed pages are reused)"),
    )),
    Section("alerts", "Alerts", (
        Key("channels", "none", "named channels (below)"),
        Key("rules", "every problem and its recovery to every channel", "which problems go to "
            "which channels (below)"),
        Key("group_wait", "10s", "problems within this go out as one message per channel"),
        Key("remind_every", "off", "a reminder while a problem lasts"),
        Key("flapping", "5 in 15m", "a program that exits this often is flapping, though every "
            "restart worked"),
        Key("retry", "{first: 5s, max: 10m}", "a failed send is tried again after first, "
            "doubling up to max"),
        Key("give_up_after", "24h", "a message not sent within this is marked failed"),
        Key("host", "fleet.name, else the host name", "the machine's name in messages (and "
            "Alertmanager's instance label)"),
    )),
    Section("alerts.retry", "Retrying a send", (
        Key("first", "5s", "the first wait"),
        Key("max", "10m", "the longest wait"),
    )),
    Section("alerts.channels.NAME", "A channel", (
        Key("webhook", "none", "a URL, or the mapping below"),
        Key("telegram", "none", "the mapping below"),
        Key("email", "none", "the mapping below"),
        Key("command", "none", "an argv, or the mapping below"),
        Key("alertmanager", "none", "a URL, or the mapping below"),
        Key("rate_limit", "20 in 1m", "at most this many messages; the rest wait and are grouped"),
    ), "Exactly one of webhook, telegram, email, command and alertmanager."),
    Section("alerts.channels.NAME.webhook", "A webhook", (
        Key("url", "required", "one POST of JSON per message; any 2xx is delivered"),
        Key("timeout", "10s", "per attempt"),
        Key("headers", "none", "extra headers, a mapping"),
    )),
    Section("alerts.channels.NAME.telegram", "A Telegram chat", (
        Key("token_file", "required", "the bot's token, in a root-only file"),
        Key("chat_id", "required", "the chat, group or channel"),
        Key("on_recovery", "delete", "delete the problem's message, edit it, or send a new one"),
        Key("timeout", "10s", "per attempt"),
        Key("api_url", "the Bot API's", "a local Bot API server"),
    )),
    Section("alerts.channels.NAME.email", "E-mail", (
        Key("host", "required", "the SMTP server"),
        Key("port", "587 (ssl: 465, none: 25)", "its port"),
        Key("tls", "starttls", "starttls, ssl or none; certificates are verified"),
        Key("user", "from", "the login"),
        Key("password_file", "none", "the password, in a root-only file"),
        Key("from", "required", "the sender's address"),
        Key("to", "required", "the recipients, a list"),
        Key("ca_file", "none", "trust this CA alone (a private relay)"),
        Key("timeout", "30s", "every step of an attempt"),
    )),
    Section("alerts.channels.NAME.command", "A command", (
        Key("argv", "required", "run without a shell, the alerts as JSON on stdin and ZELADOR_* "
            "variables; exit 0 is delivered"),
        Key("timeout", "30s", "its session is killed after this"),
    )),
    Section("alerts.channels.NAME.alertmanager", "Prometheus' Alertmanager", (
        Key("url", "required", "the Alertmanager (http://am:9093); alerts go to /api/v2/alerts"),
        Key("labels", "none", "labels added to every alert, a mapping (chain, store); zelador "
            "sets alertname (the problem), instance (the terminal), program, job or check"),
        Key("timeout", "10s", "per attempt"),
        Key("resend", "1m", "an open incident is posted again this often; Alertmanager resolves "
            "an alert that is not"),
    ), "Groups, silences and routes the whole fleet's alerts (docs/alerts.md)."),
    Section("alerts.rules[]", "A rule", (
        Key("programs", "every program", "the programs it covers"),
        Key("jobs", "every job", "the jobs it covers"),
        Key("checks", "every check", "the checks it covers (a check covers its items)"),
        Key("events", "every problem", "gave_up, start_failed, cannot_start, flapping, "
            "duplicate; failed, timeout, missed; check_failed"),
        Key("channels", "every channel", "where they go"),
        Key("recoveries", "true", "send the recovery too"),
    ), "A list; a problem goes to the channels of every rule that matches it."),
    Section("checks.NAME", "An HTTP check", (
        Key("http", "required", "a URL, or a mapping with the keys of an HTTP request (above)"),
        Key("every", "1m", "how often"),
        Key("timeout", "10s", "the whole request; at most 5m"),
        Key("fails", "1", "consecutive failures before it is failing"),
        Key("json", "none", "find the items that went quiet (below)"),
        Key("command", "none", "an argv run on failure and on recovery"),
    ), "The answer is read up to 1 MB; larger, or not JSON when json is given, fails the check."),
    Section("checks.NAME.json", "Items that went quiet", (
        Key("items", "required", "a dotted path to a list, or to an object whose keys name the "
            "items (data.workers)"),
        Key("key", "required", "the field naming an item"),
        Key("time", "required", "its last-seen time: Unix seconds, milliseconds or ISO 8601"),
        Key("stale_after", "10m", "quiet longer than this: the item is its own problem"),
        Key("ignore_after", "8h", "quiet longer than this: gone, not broken"),
    )),
    Section("system", "Rules on the machine", (
        Key("every", "10s", "the sampling interval"),
    ), "Every other key names a rule (below)."),
    Section("system.NAME", "A system rule", (
        Key("memory", "none", "used: memory used, %"),
        Key("swap", "none", "used: swap used, %"),
        Key("cpu", "none", "used: all cores, % over the sampling interval"),
        Key("load", "none", "1, 5 or 15: the load average"),
        Key("disk", "none", "a mount point: space used, % as df counts it"),
        Key("inodes", "none", "a mount point: inodes used, %"),
        Key("processes", "none", "count: the number of processes"),
        *_THRESHOLD,
        Key("per_core", "false", "load: divided by the number of cores"),
    ), "Exactly one figure, and a threshold."),
    Section("web", "The status page", (
        Key("listen", "127.0.0.1:9813", "ADDRESS:PORT, or off; not loopback needs auth_file"),
        Key("auth_file", "none", "user:password lines in a root-only file (HTTP basic auth)"),
        Key("allow_control", "false", "restart, stop and start buttons (needs auth_file)"),
        Key("hosts", "none", "names the page answers to besides the listen address and "
            "localhost (others get 421)"),
    ), "Off unless web is given; the shipped config listens on loopback."),
    Section("fleet", "The fleet in ZooKeeper and/or MQTT", (
        Key("zookeeper", "none", "the ensemble, HOST:PORT,..."),
        Key("path", "/zelador", "the fleet's znode"),
        Key("name", "the host name", "this terminal's name there"),
        Key("timeout", "10s", "the session: a dead terminal's node goes after it (at least 4s)"),
        Key("mqtt", "none", "the broker: mqtt://HOST[:1883] or mqtts://HOST[:8883] (TLS, "
            "verified)"),
        Key("topic", "zelador", "retained TOPIC/hosts/NAME/state and TOPIC/hosts/NAME/online"),
        Key("keepalive", "30s", "MQTT keep-alive; the broker says offline 1.5 keep-alives after "
            "the terminal went"),
        Key("username", "none", "the MQTT login"),
        Key("password_file", "none", "its password, in a root-only file"),
        Key("ca_file", "the system's", "the CA that signed the broker's certificate"),
        Key("client_cert", "none", "a client certificate (mqtts)"),
        Key("client_key", "none", "its key, in a root-only file"),
    ), "At least one of zookeeper and mqtt. ZooKeeper needs python3-kazoo; MQTT needs "
       "python3-paho-mqtt."),
)

_BY_PATH = {section.path: section for section in SECTIONS}


def names(path: str) -> tuple[str, ...]:
    """The keys allowed in the mapping at `path` ("programs.NAME.restart")."""
    return tuple(key.name for key in _BY_PATH[path].keys)


def section(path: str) -> Section:
    return _BY_PATH[path]
