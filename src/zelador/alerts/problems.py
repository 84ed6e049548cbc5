"""Which events open a problem, which close one: the alerts' vocabulary, shared with the config.

A problem is named by the subject's kind and a short word (`program` `gave_up`, `job` `failed`);
an incident is one such problem of one subject, from the event that opened it to the one that
closed it. `flapping` has no event of its own: the incident engine counts exits.
"""

from __future__ import annotations

# (subject kind, event kind) -> the problem it opens
OPENS: dict[tuple[str, str], str] = {
    ("program", "gave_up"): "gave_up",
    ("program", "start_failed"): "start_failed",
    ("program", "host_problem"): "cannot_start",
    ("program", "duplicate"): "duplicate",
    ("job", "job_failed"): "failed",
    ("job", "job_timeout"): "timeout",
    ("job", "job_missed"): "missed",
    ("check", "check_failed"): "failed",
}

# (subject kind, event kind) -> the problems it closes
CLOSES: dict[tuple[str, str], tuple[str, ...]] = {
    # back means it ran `stable` (and passed its health check): a start alone is no recovery
    ("program", "stable"): ("gave_up", "start_failed"),
    ("program", "started"): ("cannot_start",),
    ("program", "found"): ("gave_up", "start_failed", "cannot_start"),  # found running (at
    # zelador's start, or started by someone else): it runs as it did
    ("job", "job_ok"): ("failed", "timeout", "missed"),
    ("check", "check_recovered"): ("failed",),
}

PROBLEMS: dict[str, tuple[str, ...]] = {
    "program": ("gave_up", "start_failed", "cannot_start", "flapping", "duplicate"),
    "job": ("failed", "timeout", "missed"),
    "check": ("failed",),
}

ALL_PROBLEMS: tuple[str, ...] = tuple(dict.fromkeys(p for names in PROBLEMS.values() for p in names))

# how each problem reads in a message: "comunicador gave up"
WORDS: dict[str, str] = {
    "gave_up": "gave up", "start_failed": "failed to start", "cannot_start": "cannot start",
    "flapping": "is flapping", "duplicate": "runs twice", "failed": "failed",
    "timeout": "timed out", "missed": "did not run",
}
