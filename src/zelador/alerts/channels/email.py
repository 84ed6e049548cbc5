"""Mail through SMTP: STARTTLS (default) or TLS, certificates checked, every step time-bounded.

smtplib waits for ever without a `timeout` and checks no certificate without a context; both
are always given here. Headers are built by `email.message.EmailMessage`, and every variable
part of the subject is stripped of control characters first, so a program or job name, or a
report's `msg=`, cannot add a header. A recovery refers to the problem's mail (In-Reply-To), so
mail clients thread them.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from zelador.alerts.channels.common import read_secret, redact
from zelador.alerts.outbox import Batch, Outcome
from zelador.alerts.texts import plain, title
from zelador.config.model import Email

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def header_text(text: str, limit: int = 200) -> str:
    """One line, no control characters, bounded."""
    return _CONTROL.sub(" ", text).strip()[:limit]


class EmailSender:
    def __init__(self, target: Email, host: str) -> None:
        self.target = target
        self.host = host

    def message(self, batch: Batch) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = header_text(f"[zelador] {title(batch.items, self.host)}")
        msg["From"] = self.target.sender
        msg["To"] = ", ".join(self.target.to)
        msg["Date"] = formatdate(localtime=True)
        domain = self.target.sender.rpartition("@")[2]
        msg["Message-ID"] = make_msgid("zelador", domain=domain)
        earlier = [p.ref for p in batch.previous if p.ref.startswith("<")]
        if earlier:
            msg["In-Reply-To"] = earlier[0]
            msg["References"] = " ".join(earlier)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(plain(batch.items, self.host))
        return msg

    def send(self, batch: Batch) -> Outcome:
        t = self.target
        try:
            password = read_secret(t.password_file) if t.password_file else None
            self._password = password or ""
        except (OSError, UnicodeDecodeError) as exc:
            return Outcome(False, error=f"cannot read the password file: {exc}")
        msg = self.message(batch)
        context = ssl.create_default_context(cafile=t.ca_file)
        try:
            smtp: smtplib.SMTP
            if t.tls == "ssl":
                smtp = smtplib.SMTP_SSL(t.host, t.port, timeout=t.timeout, context=context)
            else:
                smtp = smtplib.SMTP(t.host, t.port, timeout=t.timeout)
            with smtp:
                if t.tls == "starttls":
                    smtp.starttls(context=context)
                if password is not None:
                    smtp.login(t.user or t.sender, password)
                refused = smtp.send_message(msg)
            if refused:
                who = ", ".join(f"{k} ({v[0]} {v[1].decode('utf-8', 'replace')})"
                                for k, v in refused.items())
                return Outcome(True, ref=str(msg["Message-ID"]), note=f"refused for {who}")
            return Outcome(True, ref=str(msg["Message-ID"]))
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
                else str(exc.smtp_error)
            return Outcome(False, error=f"{t.host}:{t.port}: SMTP {exc.smtp_code} {text}")
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(False, error=f"{t.host}:{t.port}: {type(exc).__name__}: "
                           f"{str(exc) or 'timed out'}")

    def clean(self, text: str) -> str:
        """`text` without the password in any form (the lane cleans every outcome with it)."""
        return redact(text, [self._password])
