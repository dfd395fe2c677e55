"""The e-mail, webhook and SMS channels against real servers on local ports, the templates they
send, and the merchant's order of channels."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from liandong.core.config import Settings
from liandong.delivery.channels import ChannelError, DeliveryNotice, notify
from liandong.delivery.mail import EmailChannel
from liandong.delivery.registry import ChannelRouter, ChannelState
from liandong.delivery.sms import SmsChannel
from liandong.delivery.templates import DEFAULT_TEMPLATES, TemplateBook, TemplateError, check_template
from liandong.delivery.webhook import (
    SIGNATURE_HEADER,
    WebhookChannel,
    WebhookSignatureError,
    sign_webhook,
    verify_webhook_signature,
)
from liandong.devtools.devnet import free_port
from liandong.events import OrderEventHub
from liandong.store.db import make_engine, migrate
from liandong.store.models import MessageTemplate
from sqlmodel import Session as DbSession

from tests.peers import Endpoint, Inbox

SECRET = "whsec-test-secret"
CARD_KEY = "XXXX-CARD-KEY-1234-SECRET"
"""The key this order bought, as the vault holds it: no message may carry it."""

NOTICE = DeliveryNotice(
    order_id=7,
    chain_order_id="0x" + "cd" * 32,
    product_name="Steam 钱包 100",
    quantity=2,
    email="buyer@example.com",
    phone="+8613800000000",
    payer="0x" + "12" * 20,
    commitment="0x" + "ef" * 32,
    order_url="https://shop.test/orders/0x" + "cd" * 32,
)


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def webhook_channel(endpoint: Endpoint, **overrides: Any) -> WebhookChannel:
    channel = WebhookChannel(settings(webhook_url=endpoint.url, webhook_secret=SECRET, **overrides))
    channel.backoff = 0.01
    return channel


# --- e-mail ----------------------------------------------------------------------------------


def test_the_email_reaches_the_smtp_server_with_the_order_link_and_no_key(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    book = TemplateBook()
    channel = EmailChannel(
        settings(
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_username="shop",
            smtp_password="pw",
            smtp_sender="keys@shop.test",
        ),
        book,
    )
    variant = asyncio.run(channel.send(NOTICE))

    expected = book.render("email", NOTICE)
    assert variant == expected.variant == book.pick("email", NOTICE.chain_order_id).variant
    assert inbox.logins == [(b"shop", b"pw")]
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "keys@shop.test"
    assert envelope.rcpt_tos == ["buyer@example.com"]
    mail = inbox.message()
    assert mail["To"] == "buyer@example.com"
    assert mail["Subject"] == expected.subject
    assert NOTICE.product_name in mail["Subject"]
    body = mail.get_body(("plain",))
    assert body is not None
    assert NOTICE.order_url in body.get_content()
    assert CARD_KEY not in body.get_content()
    assert envelope.original_content is not None
    assert CARD_KEY.encode() not in envelope.original_content


def test_wrong_smtp_credentials_fail_the_channel_with_the_variant(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    channel = EmailChannel(
        settings(smtp_host="127.0.0.1", smtp_port=port, smtp_username="shop", smtp_password="nope"),
        TemplateBook(),
    )
    with pytest.raises(ChannelError, match="e-mail not sent") as failure:
        asyncio.run(channel.send(NOTICE))
    assert failure.value.variant == TemplateBook().pick("email", NOTICE.chain_order_id).variant
    assert inbox.envelopes == []


def test_an_order_without_an_email_address_fails_the_channel_at_once(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    channel = EmailChannel(settings(smtp_host="127.0.0.1", smtp_port=port), TemplateBook())
    with pytest.raises(ChannelError, match="no e-mail address"):
        asyncio.run(channel.send(replace(NOTICE, email=None)))
    assert inbox.envelopes == []


# --- webhook ---------------------------------------------------------------------------------


def test_the_webhook_is_signed_and_the_receiver_can_verify_it(endpoint: Endpoint) -> None:
    async def send() -> str | None:
        channel = webhook_channel(endpoint)
        try:
            return await channel.send(NOTICE)
        finally:
            await channel.aclose()

    before = int(time.time())
    assert asyncio.run(send()) is None
    [request] = endpoint.requests
    header = request.headers.get(SIGNATURE_HEADER)
    verify_webhook_signature(SECRET, header, request.body)

    payload = json.loads(request.body)
    assert payload == {
        "event": "order.delivered",
        "order_id": NOTICE.chain_order_id,
        "product": NOTICE.product_name,
        "quantity": 2,
        "payer": NOTICE.payer,
        "commitment": NOTICE.commitment,
        "order_url": NOTICE.order_url,
        "timestamp": payload["timestamp"],
    }
    assert before <= payload["timestamp"] <= int(time.time())
    assert header.startswith(f"t={payload['timestamp']},v1=")
    assert CARD_KEY.encode() not in request.body

    tampered = request.body.replace(b'"quantity":2', b'"quantity":20')
    assert tampered != request.body
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, header, tampered)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature("another-secret", header, request.body)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_webhook_signature(SECRET, header, request.body, now=payload["timestamp"] + 301)


def test_replayed_and_malformed_signatures_are_refused() -> None:
    body = b'{"event":"order.delivered"}'
    now = 1_700_000_000
    verify_webhook_signature(SECRET, sign_webhook(SECRET, body, now - 300), body, now=now)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_webhook_signature(SECRET, sign_webhook(SECRET, body, now - 301), body, now=now)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_webhook_signature(SECRET, sign_webhook(SECRET, body, now + 301), body, now=now)
    # the timestamp is signed: moving it forward breaks the signature
    signature = sign_webhook(SECRET, body, now - 3600).split(",")[1]
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, f"t={now},{signature}", body, now=now)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(SECRET, f"t={now},v1=é", body, now=now)
    for header in ("", "t=abc,v1=00", f"t={now}", "v1=00", f"t={now},t={now},v1=00"):
        with pytest.raises(WebhookSignatureError, match="malformed"):
            verify_webhook_signature(SECRET, header, body, now=now)
    rotating = f"{sign_webhook('old-secret', body, now)},v1={sign_webhook(SECRET, body, now).split('v1=')[1]}"
    verify_webhook_signature(SECRET, rotating, body, now=now)


def test_smtp_down_hands_over_to_the_webhook_and_every_try_is_recorded(endpoint: Endpoint) -> None:
    closed_port = free_port()
    book = TemplateBook()
    email = EmailChannel(settings(smtp_host="127.0.0.1", smtp_port=closed_port, smtp_timeout=2.0), book)
    email.backoff = 0.01

    async def deliver() -> list[Any]:
        webhook = webhook_channel(endpoint)
        try:
            return await notify([email, webhook], NOTICE)
        finally:
            await webhook.aclose()

    attempts = asyncio.run(deliver())
    variant = book.pick("email", NOTICE.chain_order_id).variant
    assert [(a.channel, a.succeeded, a.variant) for a in attempts] == [
        ("email", False, variant),
        ("email", False, variant),
        ("webhook", True, None),
    ]
    assert all(a.order_id == NOTICE.order_id for a in attempts)
    assert attempts[0].error is not None
    assert "e-mail not sent" in attempts[0].error
    [request] = endpoint.requests
    verify_webhook_signature(SECRET, request.headers.get(SIGNATURE_HEADER), request.body)


def test_a_webhook_answering_500_is_retried_its_attempts_then_fails(endpoint: Endpoint) -> None:
    endpoint.status = 500

    async def deliver() -> list[Any]:
        webhook = webhook_channel(endpoint, webhook_attempts=3)
        try:
            return await notify([webhook], NOTICE)
        finally:
            await webhook.aclose()

    attempts = asyncio.run(deliver())
    assert [(a.channel, a.succeeded, a.error) for a in attempts] == [
        ("webhook", False, "webhook answered HTTP 500")
    ] * 3
    assert len(endpoint.requests) == 3
    for request in endpoint.requests:  # each retry is signed anew
        verify_webhook_signature(SECRET, request.headers.get(SIGNATURE_HEADER), request.body)


def test_a_webhook_that_does_not_answer_in_time_is_retried_then_fails(endpoint: Endpoint) -> None:
    endpoint.delay = 10.0

    async def deliver() -> list[Any]:
        webhook = webhook_channel(endpoint, webhook_attempts=2, webhook_timeout=0.3)
        try:
            return await notify([webhook], NOTICE)
        finally:
            await webhook.aclose()

    started = time.monotonic()
    attempts = asyncio.run(deliver())
    assert time.monotonic() - started < 5
    assert [(a.channel, a.succeeded) for a in attempts] == [("webhook", False)] * 2
    assert all(a.error is not None and "Timeout" in a.error for a in attempts)
    assert len(endpoint.requests) == 2


# --- SMS -------------------------------------------------------------------------------------


def test_the_sms_gateway_receives_the_text_with_the_order_link(endpoint: Endpoint) -> None:
    book = TemplateBook()

    async def send(notice: DeliveryNotice) -> str | None:
        channel = SmsChannel(settings(sms_gateway_url=endpoint.url, sms_gateway_token="gw-token"), book)
        try:
            return await channel.send(notice)
        finally:
            await channel.aclose()

    variant = asyncio.run(send(NOTICE))
    assert variant == book.pick("sms", NOTICE.chain_order_id).variant
    [request] = endpoint.requests
    assert request.headers.get("Authorization") == "Bearer gw-token"
    assert request.headers.get("Content-Type") == "application/json"
    payload = json.loads(request.body)
    assert payload == {"to": NOTICE.phone, "text": book.render("sms", NOTICE).body.strip()}
    assert NOTICE.order_url in payload["text"]
    assert CARD_KEY not in payload["text"]

    with pytest.raises(ChannelError, match="no phone number"):
        asyncio.run(send(replace(NOTICE, phone=None)))
    endpoint.status = 503
    with pytest.raises(ChannelError, match="SMS gateway answered HTTP 503") as failure:
        asyncio.run(send(NOTICE))
    assert failure.value.variant == variant
    assert len(endpoint.requests) == 2


# --- templates -------------------------------------------------------------------------------


def sms_template(variant: str, weight: int, active: bool = True) -> MessageTemplate:
    return MessageTemplate(
        channel="sms", variant=variant, body=f"{variant}: {{{{ order_url }}}}", weight=weight, active=active
    )


def test_variants_are_picked_by_weight_and_always_the_same_for_one_order() -> None:
    rows = [sms_template("short", 1), sms_template("long", 3), sms_template("retired", 5, active=False)]
    book = TemplateBook(rows)
    order_ids = [f"0x{n:064x}" for n in range(4000)]
    picks = [book.pick("sms", order_id).variant for order_id in order_ids]
    assert set(picks) == {"short", "long"}
    assert picks.count("long") / len(picks) == pytest.approx(0.75, abs=0.03)

    # another node (or a restart), whose database returned the rows in another order
    other = TemplateBook(list(reversed(rows)))
    assert [other.pick("sms", order_id).variant for order_id in order_ids] == picks
    assert book.pick("sms", NOTICE.chain_order_id.upper().replace("0X", "0x")) == book.pick(
        "sms", NOTICE.chain_order_id
    )
    rendered = book.render("sms", NOTICE)
    assert rendered.body == f"{rendered.variant}: {NOTICE.order_url}"


def test_the_built_in_templates_are_an_even_ab_test_and_render() -> None:
    book = TemplateBook()
    picks = [book.pick("email", f"0x{n:064x}").variant for n in range(2000)]
    assert picks.count("A") / len(picks) == pytest.approx(0.5, abs=0.04)
    for channel, templates in DEFAULT_TEMPLATES.items():
        for template in templates:
            check_template(template.subject, template.body)
        assert NOTICE.order_url in book.render(channel, NOTICE).body
    with pytest.raises(ChannelError, match="no message template"):
        book.render("webhook", NOTICE)


def test_the_book_reloads_the_active_templates_from_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate(url)
    book = TemplateBook()
    with DbSession(make_engine(url)) as session:
        session.add(
            MessageTemplate(
                channel="email", variant="only", subject="Hi {{ product_name }}", body="{{ order_url }}"
            )
        )
        session.add(sms_template("old", 1, active=False))
        session.commit()
        book.reload(session)
    assert [t.variant for t in book.variants("email")] == ["only"]
    assert book.variants("sms") == DEFAULT_TEMPLATES["sms"]  # no active one: the built-in ones
    rendered = book.render("email", NOTICE)
    assert (rendered.variant, rendered.subject, rendered.body) == (
        "only",
        f"Hi {NOTICE.product_name}",
        NOTICE.order_url,
    )


@pytest.mark.parametrize(
    ("subject", "body", "message"),
    [
        ("Keys", "{{ keys }}", "unknown variable"),
        ("{{ product }}", "{{ order_url }}", "subject: unknown variable"),
        ("Keys", "{{ ''.__class__.__mro__ }}", "is not allowed"),
        ("Keys", "{{ product_name['__class__'] }}", "is not allowed"),
        ("Keys", "{% if quantity > 99 %}{{ order_url.__class__.__base__ }}{% endif %}", "is not allowed"),
        ("Keys", "{{ order_url.upper.__globals__ }}", "is not allowed"),
        ("Keys", "{% for %}", "body, line 1"),
        ("Keys", "{{ order_url | nosuchfilter }}", "body"),
    ],
)
def test_check_template_refuses_unknown_names_and_python_internals(
    subject: str, body: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        check_template(subject, body)


def test_check_template_accepts_a_template_using_the_notice() -> None:
    check_template(
        "{{ product_name }} ×{{ quantity }}",  # noqa: RUF001
        "{% if commitment %}{{ commitment }}{% endif %} {{ chain_order_id[:10] }} {{ order_url }}",
    )


def test_a_template_that_escaped_the_check_still_cannot_reach_python_internals() -> None:
    book = TemplateBook(
        [MessageTemplate(channel="email", variant="evil", subject="x", body="{{ ''.__class__ }}")]
    )
    with pytest.raises(ChannelError, match="unsafe") as failure:
        book.render("email", NOTICE)
    assert failure.value.variant == "evil"


# --- the merchant's order of channels ----------------------------------------------------------


def test_the_router_orders_the_configured_channels_as_the_merchant_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate(url)
    router = ChannelRouter(
        settings(smtp_host="127.0.0.1", webhook_url="http://127.0.0.1:9/hook", webhook_secret=SECRET),
        OrderEventHub(),
        TemplateBook(),
    )
    with DbSession(make_engine(url)) as session:
        assert [c.name for c in router.ordered(session)] == ["in-site", "email", "webhook"]
        assert router.describe(session)[2] == ChannelState("sms", 2, enabled=True, configured=False)

        router.set_order(session, ["webhook", "sms", "in-site"])
        assert [c.name for c in router.ordered(session)] == ["webhook", "in-site"]
        assert router.describe(session) == [
            ChannelState("webhook", 0, enabled=True, configured=True),
            ChannelState("sms", 1, enabled=True, configured=False),
            ChannelState("in-site", 2, enabled=True, configured=True),
            ChannelState("email", 3, enabled=False, configured=True),
        ]
        with pytest.raises(ValueError, match="unknown channel"):
            router.set_order(session, ["email", "pigeon"])
        with pytest.raises(ValueError, match="more than once"):
            router.set_order(session, ["email", "email"])
        assert [c.name for c in router.ordered(session)] == ["webhook", "in-site"]
    asyncio.run(router.aclose())


def test_a_webhook_url_without_a_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET"):
        ChannelRouter(settings(webhook_url="http://127.0.0.1:9/hook"), OrderEventHub(), TemplateBook())
    router = ChannelRouter(settings(), OrderEventHub(), TemplateBook())
    assert list(router.channels) == ["in-site"]
