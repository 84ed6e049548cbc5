"""Telegram through the Bot API: sendMessage, and on recovery deleteMessage or editMessageText.

Seed 003's rule: the channel shows only what is still broken. A problem message is deleted when
everything in it recovered (`on_recovery: delete`), or edited to say so (`edit`, and `delete`
on a message older than the 48 h a bot may delete within), or left and a new message sent
(`send`). A message holding several problems is edited to mark the ones that recovered until
the last one does. Texts are HTML with every variable part escaped, cut to 4096 characters.
The token never appears in an error: every string from here has it replaced, in whatever form
the server or the HTTP library echoed it (percent-encoded inside a URL too: common.redact).
"""

from __future__ import annotations

import html
import json
import time
import urllib.parse
from typing import Any

from zelador.alerts.channels.common import http, read_secret, redact, short
from zelador.alerts.outbox import Batch, Outcome, Previous
from zelador.alerts.texts import MARKS, Item, clock, detail, headline
from zelador.config.model import Telegram

LIMIT = 4096
LINE = 1000  # characters of one line of text (a job's msg= can be long)
DELETE_WITHIN = 48 * 3600 - 600  # a bot deletes messages younger than 48 h; keep a margin


class ApiError(Exception):
    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        self.status = status
        self.answer = answer
        self.description = str(answer.get("description", ""))
        params = answer.get("parameters") or {}
        self.retry_after = params.get("retry_after")
        self.migrate_to = params.get("migrate_to_chat_id")
        super().__init__(f"HTTP {status}: {self.description or 'no description'}")


class TelegramSender:
    def __init__(self, target: Telegram, host: str) -> None:
        self.target = target
        self.host = host
        self.chat_id = target.chat_id  # moves when the group became a supergroup
        self._token = ""

    def send(self, batch: Batch) -> Outcome:
        try:
            self._token = read_secret(self.target.token_file)
        except (OSError, UnicodeDecodeError) as exc:
            return Outcome(False, error=f"cannot read the token file: {exc}")
        notes: list[str] = []
        try:
            handled = self._recoveries(batch.previous, notes)
            fresh = [i for i in batch.items if not (i["phase"] == "recovery" and
                                                   i["key"] in handled)]
            ref = None
            if fresh:
                answer = self._call("sendMessage", {"chat_id": self.chat_id,
                                                    "text": render(fresh, self.host),
                                                    "parse_mode": "HTML",
                                                    "disable_web_page_preview": True})
                message = answer.get("result") or {}
                ref = f"{self.chat_id}:{message.get('message_id')}"
            if self.chat_id != self.target.chat_id:
                notes.append(f"the chat moved to {self.chat_id}: update chat_id in the config")
            return Outcome(True, ref=ref, note="; ".join(notes))
        except ApiError as exc:
            return Outcome(False, error=self.clean(str(exc)), retry_after=exc.retry_after)
        except (OSError, ValueError) as exc:
            return Outcome(False, error=self.clean(f"{self.target.api_url}: "
                                                    f"{str(exc) or 'timed out'}"))

    def _recoveries(self, previous: list[Previous], notes: list[str]) -> set[str]:
        """Delete or edit the earlier messages; the keys of the recoveries that took care of."""
        if self.target.on_recovery == "send":
            return set()
        handled: set[str] = set()
        for prev in previous:
            chat, _, message_id = prev.ref.rpartition(":")
            everything = all(item.get("closed") for item in prev.items)
            young = time.time() - prev.sent < DELETE_WITHIN
            deleted = False
            if everything and self.target.on_recovery == "delete" and young:
                deleted = self._delete(chat, message_id)
                if deleted:
                    notes.append(f"deleted message {message_id}")
            if not deleted:
                self._edit(chat, message_id, render_after(prev.items, self.host))
                notes.append(f"edited message {message_id}")
            handled.update(item["key"] for item in prev.items if item.get("closed"))
        return handled

    def _delete(self, chat: str, message_id: str) -> bool:
        try:
            self._call("deleteMessage", {"chat_id": chat, "message_id": int(message_id)})
            return True
        except ApiError as exc:
            text = exc.description.lower()
            if exc.status == 400 and "not found" in text:
                return True  # already gone (someone deleted it)
            if exc.status == 400 and ("can't be deleted" in text or "cant be deleted" in text):
                return False  # too old, or no right to: edit it instead
            raise

    def _edit(self, chat: str, message_id: str, text: str) -> None:
        try:
            self._call("editMessageText", {"chat_id": chat, "message_id": int(message_id),
                                           "text": text, "parse_mode": "HTML",
                                           "disable_web_page_preview": True})
        except ApiError as exc:
            text = exc.description.lower()
            if exc.status == 400 and ("not modified" in text or "not found" in text):
                return  # already says so, or gone
            raise

    def _call(self, method: str, params: dict[str, Any], again: bool = True) -> dict[str, Any]:
        url = f"{self.target.api_url}/bot{self._token}/{method}"
        body = urllib.parse.urlencode(params).encode()
        status, data = http("POST", url, body, {"Content-Type":
                                                "application/x-www-form-urlencoded"},
                            self.target.timeout)
        try:
            answer = json.loads(data)
            if not isinstance(answer, dict):
                raise ValueError
        except ValueError:
            raise OSError(f"HTTP {status}, not a Bot API answer: {short(data)}") from None
        if status == 200 and answer.get("ok"):
            return answer
        error = ApiError(status, answer)
        if error.migrate_to is not None and again and "chat_id" in params:
            self.chat_id = str(error.migrate_to)
            return self._call(method, {**params, "chat_id": self.chat_id}, again=False)
        raise error

    def clean(self, text: str) -> str:
        """`text` without the token, in any form (the lane cleans every outcome with it too)."""
        return redact(text, [self._token]) if self._token else text


def render(items: list[Item], host: str) -> str:
    """The message: one block per item, the host in the first line."""
    blocks = [f"<b>{html.escape(host)}</b>"]
    for item in items:
        lines = [f"{MARKS.get(item['phase'], '')} <b>{html.escape(headline(item))}</b>"]
        for line in detail(item):
            if line.startswith("journalctl"):
                lines.append(f"<code>{html.escape(line[:LINE])}</code>")
            else:
                lines.append(html.escape(line[:LINE]))
        blocks.append("\n".join(lines))
    return cut("\n\n".join(blocks))


def render_after(items: list[Item], host: str) -> str:
    """An earlier message, its recovered items marked."""
    blocks = [f"<b>{html.escape(host)}</b>"]
    for item in items:
        if item.get("closed"):
            blocks.append(f"{MARKS['recovery']} <s>{html.escape(headline(item))}</s> "
                          f"recovered at {clock(float(item['closed']))}")
        else:
            lines = [f"{MARKS['problem']} <b>{html.escape(headline(item))}</b>"]
            lines += [html.escape(line[:LINE]) for line in detail(item)]
            blocks.append("\n".join(lines))
    return cut("\n\n".join(blocks))


def cut(text: str) -> str:
    """At most LIMIT characters, never inside a tag or an entity."""
    if len(text) <= LIMIT:
        return text
    head = text[:LIMIT - 40]
    head = head[:max(head.rfind("\n"), 0)] or head[:LIMIT - 40]
    return head + "\n... (cut; see zelador alerts)"
