"""The e-mail channel: the buyer's address gets a link to their order page, never the keys.

smtplib blocks, so each message is sent in a worker thread; a relay that is down costs a thread
for at most the configured timeout, never the event loop.

Transport security: implicit TLS (`smtp_ssl`) or STARTTLS, with the system's CAs and the host name
checked, for every server that is not loopback (`localhost`, 127.0.0.0/8, ::1, named literally: a
name that resolves there is not trusted to). A server that does not offer STARTTLS is refused, never
talked to in clear; plaintext to a remote server only with `smtp_allow_plaintext`.
"""

from __future__ import annotations

import asyncio
import ipaddress
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
        self.password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        self.implicit_tls = settings.smtp_ssl
        loopback = is_loopback_host(self.host)
        self.starttls = not self.implicit_tls and (
            settings.smtp_starttls if settings.smtp_starttls is not None else not loopback
        )
        self.plaintext_refused = (
            not (self.implicit_tls or self.starttls) and not loopback and not settings.smtp_allow_plaintext
        )
        """Neither TLS mode, to a remote server, without an explicit allowance: nothing is sent."""
        self.sender = settings.smtp_sender
        self.domain = parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"
        """For Message-ID; make_msgid would otherwise look the host's name up in DNS, in the loop."""
        self.timeout = settings.smtp_timeout
        self.templates = templates

    async def send(self, notice: DeliveryNotice) -> str | None:
        if not notice.email:
            raise ChannelError("no e-mail address")
        message = self.templates.render(self.name, notice)
        if self.plaintext_refused:
            raise ChannelError(
                f"e-mail not sent: {self.host} is not a loopback server and TLS is off "
                "(LIANDONG_SMTP_STARTTLS, LIANDONG_SMTP_SSL; LIANDONG_SMTP_ALLOW_PLAINTEXT allows it)",
                message.variant,
            )
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
        context = ssl.create_default_context()
        connection = (
            smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            if self.implicit_tls
            else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        )
        with connection as smtp:
            if self.starttls:  # raises SMTPNotSupportedError when the server does not offer it
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(mail)


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address written as such; no name is resolved (DNS could lie)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
