"""What an alert says, for a phone: the host, the subject, what happened, since when, what to read.

An item is one notice as stored in the outbox (a plain dict, JSON in SQLite, so a message can be
written after a restart exactly as it would have been before). A message is one or more items
for one channel. Every channel renders from here; escaping for the target is the channel's job
(Telegram HTML, mail headers), done on the strings these functions return.
"""

from __future__ import annotations

import time
from typing import Any

from zelador.alerts.problems import WORDS
from zelador.config.durations import format_duration

Item = dict[str, Any]  # key, phase, subject_kind, subject, problem, opened, closed, at, message,
# first (the opening event's message), host; "episode": a recovery whose problem was never sent

MARKS = {"problem": "\U0001F534", "reminder": "\U0001F501", "recovery": "\u2705",
         "episode": "\u26A0\uFE0F", "test": "\U0001F514"}
FIELD = {"program": "ZELADOR_PROGRAM", "job": "ZELADOR_JOB", "check": "ZELADOR_CHECK"}


def clock(wall: float) -> str:
    return time.strftime("%H:%M", time.localtime(wall))


def day_clock(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(wall))


def headline(item: Item) -> str:
    """One line: `comunicador gave up`, `comunicador is back (gave up 14:02-14:09, 7m)`."""
    subject, word = item["subject"], WORDS.get(item["problem"], item["problem"])
    phase = item["phase"]
    if phase == "test":
        return "test message from zelador"
    if phase == "problem":
        return f"{subject} {word}"
    if phase == "reminder":
        return f"{subject} still {word} (since {clock(item['opened'])}, " \
               f"{format_duration(item['at'] - item['opened'])})"
    span = f"{clock(item['opened'])}-{clock(item['closed'])}, " \
           f"{format_duration(max(0.0, item['closed'] - item['opened']))}"
    if phase == "episode":
        return f"{subject} {word} and recovered ({span})"
    return f"{subject} is back (it {word} {span})"


def detail(item: Item) -> list[str]:
    """The lines under the headline: what zelador saw and did, and where to read more."""
    phase = item["phase"]
    if phase == "test":
        return [item["message"]]
    lines = []
    if phase in ("problem", "reminder"):
        lines.append(_strip_subject(item["message"], item["subject"]))
    elif phase == "episode":
        lines.append(_strip_subject(item["first"], item["subject"]))
        lines.append("then: " + _strip_subject(item["message"], item["subject"]))
    else:
        lines.append(_strip_subject(item["message"], item["subject"]))
    lines.append(journal_line(item))
    return lines


def journal_line(item: Item) -> str:
    field = FIELD.get(item["subject_kind"], "ZELADOR_PROGRAM")
    return f"journalctl -u zelador {field}={item['subject']} --since \"{day_clock(item['opened'])}\""


def title(items: list[Item], host: str) -> str:
    """A subject line for the whole message."""
    if len(items) == 1:
        return f"{host}: {headline(items[0])}"
    open_ = sum(1 for i in items if i["phase"] in ("problem", "reminder"))
    closed = len(items) - open_
    parts = ([f"{open_} problem{'s' * (open_ > 1)}"] if open_ else []) + \
            ([f"{closed} recovered"] if closed else [])
    return f"{host}: {', '.join(parts)}"


def plain(items: list[Item], host: str) -> str:
    """The message as plain text (mail body, command stdin's "text"); the title is the mail's
    subject, so a single item is not said twice."""
    out = [title(items, host), ""] if len(items) > 1 else []
    for item in items:
        out.append(f"{MARKS.get(item['phase'], '')} {headline(item)}".strip())
        out += [f"  {line}" for line in detail(item)]
    out += ["", f"-- zelador on {host}"]
    return "\n".join(out) + "\n"


def _strip_subject(message: str, subject: str) -> str:
    """Events say `comunicador: exited ...`; under a headline naming it, the prefix is noise."""
    prefix = f"{subject}: "
    return message[len(prefix):] if message.startswith(prefix) else message
