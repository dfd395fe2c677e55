"""Issue 12, item 5: a message template cannot exhaust memory or time."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from liandong.delivery.channels import ChannelError, DeliveryNotice
from liandong.delivery.templates import MAX_BODY_CHARS, TemplateBook
from liandong.store.models import MessageTemplate

from tests.api.conftest import Api
from tests.security.helpers import login

BOMB = "{{ 'x' * 10**8 }}"
NOTICE = DeliveryNotice(
    order_id=1,
    chain_order_id="0x" + "cd" * 32,
    product_name="P" * 200,
    quantity=1,
    email="buyer@example.com",
    phone=None,
    payer=None,
    commitment=None,
    order_url="http://shop.test/orders/0x" + "cd" * 32,
)


def test_template_multiplying_a_string_to_100_mb_is_refused_at_save(api: Api) -> None:
    login(api)
    for body in (
        BOMB,
        "{{ product_name * 1000000 }}",
        "{% for n in range(100000) %}{{ order_url }}{% endfor %}",
        "{{ lipsum(100000) }}",
        "{{ order_url | center(100000000) }}",
        "{% macro m() %}{{ order_url }}{% endmacro %}{{ m() }}",
    ):
        answer = api.client.put("/api/merchant/templates/email/bomb", json={"subject": "Keys", "body": body})
        assert answer.status_code == 422, (body, answer.text)
        assert "not allowed" in answer.json()["detail"] or "unknown" in answer.json()["detail"], answer.text
    ok = api.client.put(
        "/api/merchant/templates/email/plain",
        json={
            "subject": "{{ product_name | upper }}",
            "body": "{% if commitment %}{{ commitment }}{% endif %}"
            " {{ chain_order_id[:10] ~ '…' }} {{ order_url }}",
        },
    )
    assert ok.status_code == 200, ok.text


def test_template_bomb_stored_past_the_check_is_bounded_at_render() -> None:
    """One stored before the check existed (or written to the database by hand) still fails the
    channel at once, without allocating what it asks for."""
    book = TemplateBook([MessageTemplate(channel="email", variant="bomb", subject="x", body=BOMB)])
    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(ChannelError, match="not allowed") as failure:
        book.render("email", NOTICE)
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert failure.value.variant == "bomb"
    assert elapsed < 1.0
    assert peak < 10 * 1024 * 1024, f"rendering took {peak} bytes"

    # Output bounded too: allowed syntax that repeats a long field past the cap stops at the cap.
    long = "{{ product_name }}" * (MAX_BODY_CHARS // 200 + 10)
    book = TemplateBook([MessageTemplate(channel="email", variant="long", subject="x", body=long)])
    with pytest.raises(ChannelError, match="longer than"):
        book.render("email", NOTICE)
