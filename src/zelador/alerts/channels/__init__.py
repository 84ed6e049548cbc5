"""The alert channels: each turns a batch of items into one attempt on its target."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from zelador.alerts.outbox import Sender
from zelador.config.model import Alertmanager, Channel, Command, Email, Telegram, Webhook

Runner = Callable[[list[str], bytes, float, dict[str, str]],
                  tuple[Optional[int], bytes]]  # 3.9: no `|` outside annotations


def build(channel: Channel, host: str, runner: Runner | None = None) -> Sender:
    """The sender for a channel (each module is imported only when a channel uses it)."""
    target = channel.target
    if isinstance(target, Webhook):
        from zelador.alerts.channels.webhook import WebhookSender

        return WebhookSender(target, host)
    if isinstance(target, Telegram):
        from zelador.alerts.channels.telegram import TelegramSender

        return TelegramSender(target, host)
    if isinstance(target, Alertmanager):
        from zelador.alerts.channels.alertmanager import AlertmanagerSender

        return AlertmanagerSender(target, host)
    if isinstance(target, Email):
        from zelador.alerts.channels.email import EmailSender

        return EmailSender(target, host)
    assert isinstance(target, Command)
    from zelador.alerts.channels.command import CommandSender

    return CommandSender(target, host, runner)
