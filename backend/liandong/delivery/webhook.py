"""The webhook channel: a signed callback to the merchant's own system when an order is delivered.

The callback is a POST of JSON (no keys; the merchant's system reads them through the API if it
must), for example::

    {"event": "order.delivered", "order_id": "0x…", "product": "…", "quantity": 1, "payer": "0x…",
     "commitment": "0x…", "order_url": "https://…/orders/0x…", "timestamp": 1700000000}

It is signed like Stripe's webhooks, in the header::

    Liandong-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, b"<t>." + raw body)>

A receiver recomputes the HMAC over the raw bytes it received (before parsing the JSON), compares
in constant time, and refuses a timestamp outside its tolerance, so that a captured callback cannot
be replayed later: `verify_webhook_signature` does all of this. Each retry is signed anew with its
own timestamp; receivers deduplicate by `order_id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping

import httpx

from liandong.core.config import Settings
from liandong.delivery.channels import ChannelError, DeliveryNotice

SIGNATURE_HEADER = "Liandong-Signature"
DELIVERED_EVENT = "order.delivered"


class WebhookSignatureError(Exception):
    """A callback whose signature is missing, wrong, or too old to be trusted."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_webhook_signature(
    secret: str, header: str, body: bytes, tolerance_seconds: int = 300, now: int | None = None
) -> None:
    """Raises WebhookSignatureError unless `header` signs `body` with `secret` within the tolerance.

    Several `v1=` entries are accepted (one matching is enough), so a sender may sign with an old
    and a new secret while the secret is rotated.
    """
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit() or not signatures:
        raise WebhookSignatureError(f"malformed or missing {SIGNATURE_HEADER} header")
    timestamp = int(timestamps[0])
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError("the signature's timestamp is outside the tolerance (a replay?)")
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected.encode(), signature.encode()) for signature in signatures):
        raise WebhookSignatureError("the signature does not match the body")


def signed_body(secret: str, payload: Mapping[str, object]) -> tuple[bytes, dict[str, str]]:
    """`payload` with the current `timestamp`, as compact JSON, and the signature header for it."""
    timestamp = int(time.time())
    body = json.dumps({**payload, "timestamp": timestamp}, ensure_ascii=False, separators=(",", ":")).encode()
    return body, {SIGNATURE_HEADER: sign_webhook(secret, body, timestamp)}


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    what: str,
    variant: str | None,
) -> None:
    """POSTs a JSON body; a network error or a non-2xx answer is a ChannelError, for the failover."""
    try:
        response = await client.post(
            url, content=body, headers={"Content-Type": "application/json", **headers}
        )
    except httpx.HTTPError as exc:
        raise ChannelError(f"{what} unreachable: {type(exc).__name__} {exc}".strip(), variant) from exc
    if not response.is_success:
        raise ChannelError(f"{what} answered HTTP {response.status_code}", variant)


class WebhookChannel:
    name = "webhook"

    backoff = 1.0

    def __init__(self, settings: Settings) -> None:
        if not settings.webhook_url or not settings.webhook_secret:
            raise ValueError("the webhook channel needs LIANDONG_WEBHOOK_URL and LIANDONG_WEBHOOK_SECRET")
        self.url = settings.webhook_url
        self.secret = settings.webhook_secret.get_secret_value()
        self.attempts = settings.webhook_attempts
        self.client = httpx.AsyncClient(timeout=settings.webhook_timeout)

    async def send(self, notice: DeliveryNotice) -> str | None:
        payload = {
            "event": DELIVERED_EVENT,
            "order_id": notice.chain_order_id,
            "product": notice.product_name,
            "quantity": notice.quantity,
            "payer": notice.payer,
            "commitment": notice.commitment,
            "order_url": notice.order_url,
        }
        body, headers = signed_body(self.secret, payload)
        await post_json(self.client, self.url, body, headers, "webhook", None)
        return None

    async def aclose(self) -> None:
        await self.client.aclose()
