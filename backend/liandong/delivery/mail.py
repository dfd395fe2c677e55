"""The e-mail channel: the buyer's address gets a link to their order page, never the keys.

smtplib blocks, so each message is sent in a worker thread; a relay that is down costs a thread
for at most the configured timeout, never the event loop.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from liandong.core.config import Settings
from liandong.delivery.channels import ChannelError, DeliveryNotice
from liandong.delivery.templates import RenderedMessage, TemplateBook


class EmailChannel:
    name = "email"

    attempts = 2
    """A relay that refused once (greylisting, a restart) usually takes the second try."""
    backoff = 2.0

    def __init__(self, settings: Settings, templates: TemplateBook) -> None:
        if not settings.smtp_host:
            raise ValueError("the e-mail channel needs LIANDONG_SMTP_HOST")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username
        self.password = settings.smtp_password
        self.starttls = settings.smtp_starttls
        self.sender = settings.smtp_sender
        self.domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"
        """For Message-ID; make_msgid would otherwise look the host's name up in DNS, in the loop."""
        self.timeout = settings.smtp_timeout
        self.templates = templates

    async def send(self, notice: DeliveryNotice) -> str | None:
        if not notice.email:
            raise ChannelError("no e-mail address")
        message = self.templates.render(self.name, notice)
        try:
            mail = self._compose(notice.email, message)
            await asyncio.to_thread(self._deliver, mail)
        except (smtplib.SMTPException, OSError, ValueError) as exc:  # ValueError: a malformed address
            raise ChannelError(f"e-mail not sent: {exc}", message.variant) from exc
        return message.variant

    def _compose(self, to: str, message: RenderedMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate()
        mail["Message-ID"] = make_msgid(domain=self.domain)
        mail.set_content(message.body)
        return mail

    def _deliver(self, mail: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(mail)
