"""The alerts' SQLite file (`alerts.db` in the state dir): incidents and the outbox.

Every message to send is an `outbox` row before any attempt, so neither a `kill -9` of zelador
nor a mail server that is down for a day loses one. A row is one notice for one channel; rows
of one channel that are due together go out as one message (their `batch`). States:
pending -> sending -> sent, or back to pending with a later `due` after a failed attempt, or
failed (not sent within give_up_after), or superseded (a problem still unsent when it recovered:
its recovery row says "was down from X to Y" instead).

Only the outbox thread writes; `zelador alerts` reads with its own connection (WAL).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zelador.alerts.incidents import RECOVERY, Incident
from zelador.alerts.lanes import Previous
from zelador.alerts.texts import Item
from zelador.store.files import connect_private_sqlite

FILE = "alerts.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL, subject_kind TEXT NOT NULL, subject TEXT NOT NULL,
    problem TEXT NOT NULL, opened REAL NOT NULL, message TEXT, reminded REAL, closed REAL,
    closed_message TEXT);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (key) WHERE closed IS NULL;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, incident INTEGER, phase TEXT NOT NULL,
    created REAL NOT NULL, due REAL NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, sent REAL, ref TEXT, batch INTEGER,
    item TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox (channel, due) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_incident ON outbox (incident, channel);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created);
CREATE INDEX IF NOT EXISTS outbox_ref ON outbox (channel, ref) WHERE ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (batch) WHERE state = 'sending';
"""

WAITING = ("pending", "sending")


@dataclass(frozen=True)
class Row:
    id: int
    channel: str
    incident: int | None
    phase: str
    created: float
    due: float
    state: str
    attempts: int
    last_error: str | None
    sent: float | None
    ref: str | None
    batch: int | None
    item: Item


COLUMNS = "id, channel, incident, phase, created, due, state, attempts, last_error, sent, ref, " \
          "batch, item"


def row_of(values: tuple[Any, ...]) -> Row:
    (ident, channel, incident, phase, created, due, state, attempts, last_error, sent, ref,
     batch, item) = values
    return Row(ident, channel, incident, phase, created, due, state, attempts, last_error, sent,
               ref, batch, json.loads(item))


def connect(path: str, note: Callable[[str], None] | None = None) -> sqlite3.Connection:
    """The keeper's connection; the file and its -wal/-shm are 0600 (message texts can name
    internal hosts; a failed attempt's error can hold what a server echoed)."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    conn = connect_private_sqlite(path, 0o600, timeout=5.0, note=note)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA cache_size=-512")  # KiB; the working set is the pending rows
        conn.executescript(SCHEMA)
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def open_incidents(conn: sqlite3.Connection) -> list[Incident]:
    rows = conn.execute("SELECT subject_kind, subject, problem, opened, message, reminded "
                        "FROM incidents WHERE closed IS NULL ORDER BY id").fetchall()
    return [Incident(kind, subject, problem, opened, message or "", reminded=reminded or opened)
            for kind, subject, problem, opened, message, reminded in rows]


def open_incident_id(conn: sqlite3.Connection, key: str) -> int | None:
    found = conn.execute("SELECT id FROM incidents WHERE key = ? AND closed IS NULL "
                         "ORDER BY id DESC LIMIT 1", (key,)).fetchone()
    return None if found is None else int(found[0])


def delivered_open(conn: sqlite3.Connection, channel: str) -> list[Item]:
    """The problem items `channel` delivered whose incident is still open (an Alertmanager
    channel resends them after a restart)."""
    rows = conn.execute("SELECT o.item FROM outbox o JOIN incidents i ON o.incident = i.id "
                        "WHERE i.closed IS NULL AND o.channel = ? AND o.state = 'sent' AND "
                        "o.phase IN ('problem', 'reminder') ORDER BY o.id", (channel,)).fetchall()
    latest: dict[str, Item] = {}
    for (text,) in rows:
        item = json.loads(text)
        latest[str(item.get("key"))] = item
    return list(latest.values())


def read_outbox(path: str, *, limit: int = 20) -> dict[str, Any]:
    """For `zelador alerts`: open incidents, counts by state, the latest rows (read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    try:
        incidents = [dict(zip(("subject_kind", "subject", "problem", "opened", "message"), r))
                     for r in conn.execute("SELECT subject_kind, subject, problem, opened, message "
                                           "FROM incidents WHERE closed IS NULL ORDER BY opened")]
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        rows = [row_of(r) for r in conn.execute(
            f"SELECT {COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?", (limit,))]
    finally:
        conn.close()
    latest = [{"id": r.id, "channel": r.channel, "phase": r.phase, "state": r.state,
               "created": r.created, "due": r.due, "sent": r.sent, "attempts": r.attempts,
               "last_error": r.last_error, "subject": r.item.get("subject"),
               "problem": r.item.get("problem")} for r in rows]
    return {"incidents": incidents, "counts": counts, "latest": latest}


# --- the keeper's questions (alerts/outbox.py), on its connection --------------------------------


def merge_unsent(conn: sqlite3.Connection, channel: str) -> None:
    """A recovery waiting behind its own problem (whose attempt failed after the recovery was
    written): the problem is superseded, and the recovery says both, as an episode."""
    pairs = conn.execute(
        "SELECT DISTINCT r.id, r.item, r.incident FROM outbox r JOIN outbox p ON p.incident = "
        "r.incident AND p.channel = r.channel WHERE r.channel = ? AND r.state = 'pending' AND "
        "r.phase = 'recovery' AND p.state = 'pending' AND p.phase IN ('problem', 'reminder')",
        (channel,)).fetchall()
    for ident, item_json, incident in pairs:
        conn.execute("UPDATE outbox SET state = 'superseded', last_error = 'recovered before it "
                     "was sent' WHERE incident = ? AND channel = ? AND state = 'pending' AND "
                     "phase IN ('problem', 'reminder')", (incident, channel))
        told = conn.execute("SELECT 1 FROM outbox WHERE incident = ? AND channel = ? AND "
                            "phase = 'problem' AND state IN ('sent', 'sending')",
                            (incident, channel)).fetchone()
        if told is None:
            try:
                item = dict(json.loads(item_json), phase="episode")
            except (ValueError, TypeError):
                continue  # a damaged row: the keeper sets it aside when it reads it to send
            conn.execute("UPDATE outbox SET phase = 'episode', item = ? WHERE id = ?",
                         (json.dumps(item), ident))


def previous(conn: sqlite3.Connection, channel: str, rows: list[Row]) -> list[Previous]:
    """The sent messages about the incidents that recover in `rows`."""
    incidents = [r.incident for r in rows if r.phase == RECOVERY and r.incident is not None]
    if not incidents:
        return []
    refs = conn.execute(
        f"SELECT DISTINCT ref, sent FROM outbox WHERE channel = ? AND state = 'sent' AND "
        f"ref IS NOT NULL AND phase IN ('problem', 'reminder') AND incident IN "
        f"({','.join('?' * len(incidents))})", (channel, *incidents)).fetchall()
    out = []
    for ref, sent in refs:
        items = []
        for item_json, closed in conn.execute(
                "SELECT o.item, i.closed FROM outbox o LEFT JOIN incidents i ON i.id = "
                "o.incident WHERE o.channel = ? AND o.ref = ? AND o.phase IN ('problem', "
                "'reminder') ORDER BY o.id", (channel, ref)).fetchall():
            try:
                items.append(dict(json.loads(item_json), closed=closed))
            except (ValueError, TypeError):
                continue  # a damaged row: that message is left as it is
        out.append(Previous(ref, sent, items))
    return out
