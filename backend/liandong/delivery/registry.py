"""Which delivery channels the shop has, and the merchant's order of them.

Settings say which channels can work (their servers and secrets); the database says which ones
the merchant wants and in what order, so the order can change at run time without a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, select

from liandong.core.config import Settings
from liandong.core.errors import InvalidError
from liandong.delivery.channels import Channel, InSiteChannel
from liandong.delivery.mail import EmailChannel
from liandong.delivery.sms import SmsChannel
from liandong.delivery.templates import TemplateBook
from liandong.delivery.webhook import WebhookChannel
from liandong.events import OrderEventHub
from liandong.store.models import ChannelSetting

CHANNEL_NAMES = ("in-site", "email", "sms", "webhook")
"""Every channel the shop knows, in the order used for channels the merchant has not placed."""


@dataclass(frozen=True)
class ChannelState:
    name: str
    position: int
    enabled: bool
    configured: bool
    """Settings give it what it needs; an enabled channel that is not configured is skipped."""


class ChannelOrderError(InvalidError, ValueError):
    """The merchant asked for an order of channels that names an unknown one or one twice."""


class ChannelRouter:
    def __init__(self, settings: Settings, hub: OrderEventHub, templates: TemplateBook) -> None:
        if settings.webhook_url and not settings.webhook_secret:
            raise ValueError(
                "LIANDONG_WEBHOOK_URL is set without LIANDONG_WEBHOOK_SECRET: callbacks must be signed"
            )
        self.channels: dict[str, Channel] = {"in-site": InSiteChannel(hub, settings.in_site_ack_seconds)}
        if settings.smtp_host:
            self.channels["email"] = EmailChannel(settings, templates)
        if settings.sms_gateway_url:
            self.channels["sms"] = SmsChannel(settings, templates)
        if settings.webhook_url:
            self.channels["webhook"] = WebhookChannel(settings)

    def describe(self, session: Session) -> list[ChannelState]:
        """Every known channel in delivery order: placed ones by position, then the rest."""
        rows = {row.name: row for row in session.exec(select(ChannelSetting))}

        def rank(name: str) -> tuple[int, int, int]:
            row = rows.get(name)
            return (0, row.position, CHANNEL_NAMES.index(name)) if row else (1, 0, CHANNEL_NAMES.index(name))

        return [
            ChannelState(name, position, rows[name].enabled if name in rows else True, name in self.channels)
            for position, name in enumerate(sorted(CHANNEL_NAMES, key=rank))
        ]

    def ordered(self, session: Session) -> list[Channel]:
        """The channels a notice goes through, in order."""
        return [
            self.channels[state.name]
            for state in self.describe(session)
            if state.enabled and state.configured
        ]

    def set_order(self, session: Session, names: Sequence[str]) -> None:
        """Enables `names` in this order and disables the other channels; commits."""
        unknown = [name for name in names if name not in CHANNEL_NAMES]
        if unknown:
            raise ChannelOrderError(
                f"unknown channel(s) {', '.join(unknown)}; known: {', '.join(CHANNEL_NAMES)}"
            )
        if len(set(names)) != len(names):
            raise ChannelOrderError("a channel is listed more than once")
        placed = [*names, *(name for name in CHANNEL_NAMES if name not in names)]
        for position, name in enumerate(placed):
            session.merge(ChannelSetting(name=name, position=position, enabled=name in names))
        session.commit()

    async def aclose(self) -> None:
        """Closes the HTTP clients of the channels that have one."""
        for channel in self.channels.values():
            if isinstance(channel, WebhookChannel | SmsChannel):
                await channel.aclose()
