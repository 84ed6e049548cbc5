"""The errors zelador raises, and the exit codes the CLI maps them to.

    ZeladorError                 base: the CLI prints "zelador: error: <message>", exits 1
    ├── ConfigError              a config file is wrong (exit 78, EX_CONFIG); names file:line: key
    ├── UnsafeFileError          as root, a file a non-root user could modify (exit 78)
    ├── LaunchError              a start or stop command could not be run (exit 1)
    ├── ControlError             the running daemon cannot be reached or refused (exit 69)
    └── UsageError               the command line is wrong (exit 64, EX_USAGE)
"""

from __future__ import annotations

EX_OK = 0
EX_RUNTIME = 1
EX_DOWN = 3  # `zelador status`/`check`: something watched is not running
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_CONFIG = 78

# What each exit status means, for zelador(1) and `zelador --help`.
EXIT_STATUS = (
    (EX_OK, "success; status and check: every watched program is running"),
    (EX_RUNTIME, "a runtime error; alerts test: a channel did not take the message"),
    (EX_DOWN, "status and check: a watched program is not running; jobs: a job is FAIL, TIMEOUT "
     "or MISSED; checks: a check is failing; fleet: a terminal is DOWN or MISSING; start, stop, "
     "restart: not done (FATAL, BACKOFF, or past --timeout)"),
    (EX_USAGE, "the command line is wrong"),
    (EX_UNAVAILABLE, "the daemon cannot be reached, or another zelador holds the lock"),
    (EX_CONFIG, "the config is wrong or unsafe (validate --strict: warnings too)"),
)


class ZeladorError(Exception):
    """Base of every error zelador raises on purpose; its text is one line a sysadmin can act on."""

    exit_code = EX_RUNTIME


class ConfigError(ZeladorError):
    """A config file is wrong. The message is `FILE:LINE: KEY: what is wrong`."""

    exit_code = EX_CONFIG

    def __init__(self, message: str, *, file: str = "", line: int = 0, key: str = "") -> None:
        self.file = file
        self.line = line
        self.key = key
        self.detail = message
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class UnsafeFileError(ZeladorError):
    """Running as root, a file that a non-root user could modify was refused."""

    exit_code = EX_CONFIG


class LaunchError(ZeladorError):
    """A start or stop command could not be run at all.

    `host` marks a problem of this machine (script missing or unsafe, unknown user) rather than
    of this one attempt: the program waits in FATAL and is re-checked, the others go on."""

    def __init__(self, message: str, *, host: bool = False) -> None:
        super().__init__(message)
        self.host = host


class ControlError(ZeladorError):
    """The running daemon could not be reached, or refused the request."""

    exit_code = EX_UNAVAILABLE


class UsageError(ZeladorError):
    """The command line is wrong."""

    exit_code = EX_USAGE
