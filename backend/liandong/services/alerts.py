"""Tells the merchant's own system about the shop's alerts, not only the dashboard.

The leader looks at `services.stats.alerts` every `alert_check_seconds` and POSTs each alert to the
merchant's webhook (`LIANDONG_WEBHOOK_URL`), signed like the delivery callbacks, e.g.::

    {"event": "shop.alert", "kind": "anomaly", "detail": "…", "count": 1, "timestamp": 1700000000}

An alert is sent when it appears and again every `alert_repeat_seconds` while it lasts, so a
merchant is reminded without being flooded; a failed POST is tried again at the next look. Every
alert is also logged as a warning, so a shop without a webhook sees it in its logs.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from liandong.core.config import Settings
from liandong.delivery.channels import ChannelError
from liandong.delivery.webhook import post_json, signed_body
from liandong.services.stats import Alert, AlertKind, alerts

log = logging.getLogger(__name__)
ALERT_EVENT = "shop.alert"


class AlertNotifier:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.sent_at: dict[AlertKind, float] = {}
        """When each kind of alert was last told, while it lasts (monotonic seconds)."""

    def current(self) -> list[Alert]:
        with Session(self.engine) as session:
            return alerts(
                session,
                settlement_lag_seconds=self.settings.settlement_lag_alert_seconds,
                balance_batches=self.settings.operator_balance_alert_batches,
            )

    async def check(self, client: httpx.AsyncClient | None) -> list[Alert]:
        """Tells what is new or due for a reminder; returns the alerts told."""
        found = self.current()
        for gone in set(self.sent_at) - {alert.kind for alert in found}:
            del self.sent_at[gone]  # over: told again at once if it comes back
        now = time.monotonic()
        due = [
            alert
            for alert in found
            if now - self.sent_at.get(alert.kind, -self.settings.alert_repeat_seconds)
            >= self.settings.alert_repeat_seconds
        ]
        told = []
        for alert in due:
            log.warning("ALERT %s (%s orders): %s", alert.kind.value, alert.count, alert.detail)
            if client is not None:
                try:
                    await self._post(client, alert)
                except ChannelError as error:
                    log.warning("alert %s not delivered to the webhook: %s", alert.kind.value, error)
                    continue
            self.sent_at[alert.kind] = now
            told.append(alert)
        return told

    async def _post(self, client: httpx.AsyncClient, alert: Alert) -> None:
        assert self.settings.webhook_url is not None
        assert self.settings.webhook_secret is not None
        payload = {
            "event": ALERT_EVENT,
            "kind": alert.kind.value,
            "detail": alert.detail,
            "count": alert.count,
        }
        body, headers = signed_body(self.settings.webhook_secret.get_secret_value(), payload)
        await post_json(client, self.settings.webhook_url, body, headers, "alert webhook", None)

    async def run(self) -> None:
        configured = self.settings.webhook_url is not None and self.settings.webhook_secret is not None
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout) as client:
            while True:
                await asyncio.sleep(self.settings.alert_check_seconds)
                try:
                    await self.check(client if configured else None)
                except Exception:  # the database may be away for a moment: look again next time
                    log.exception("checking the shop's alerts failed")
