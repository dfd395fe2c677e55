"""The SMS channel, through a generic HTTP gateway: POST {"to": phone, "text": message} as JSON.

Every SMS provider has an API of its own, so the shop speaks one plain shape, and a gateway that
accepts it (or a small relay in front of a provider) does the rest. The text carries the order
link, never the keys.
"""

from __future__ import annotations

import json

import httpx

from liandong.core.config import Settings
from liandong.delivery.channels import ChannelError, DeliveryNotice
from liandong.delivery.templates import TemplateBook
from liandong.delivery.webhook import post_json


class SmsChannel:
    name = "sms"

    attempts = 2
    backoff = 1.0

    def __init__(self, settings: Settings, templates: TemplateBook) -> None:
        if not settings.sms_gateway_url:
            raise ValueError("the SMS channel needs LIANDONG_SMS_GATEWAY_URL")
        self.url = settings.sms_gateway_url
        self.headers = (
            {"Authorization": f"Bearer {settings.sms_gateway_token.get_secret_value()}"}
            if settings.sms_gateway_token
            else {}
        )
        self.templates = templates
        self.client = httpx.AsyncClient(timeout=settings.sms_timeout)

    async def send(self, notice: DeliveryNotice) -> str | None:
        if not notice.phone:
            raise ChannelError("no phone number")
        message = self.templates.render(self.name, notice)
        body = json.dumps({"to": notice.phone, "text": message.body.strip()}, ensure_ascii=False).encode()
        await post_json(self.client, self.url, body, self.headers, "SMS gateway", message.variant)
        return message.variant

    async def aclose(self) -> None:
        await self.client.aclose()
