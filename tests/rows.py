"""Rows the store-level tests start from, written straight to the database (no chain, no API).

A confirmed order is what the indexer hands the delivery engine; building it here, once, keeps the
tests of the engine and of the races around it on the same row.
"""

from __future__ import annotations

import os

from liandong.chain.quotes import NATIVE_COIN
from liandong.store.models import OrderStatus, ShopOrder
from sqlmodel import Session

PAYER = "0x" + "11" * 20


def confirmed_order(
    session: Session, product_id: int, deadline: int, quote_expiry: int = 0
) -> tuple[int, str]:
    """A paid and confirmed order for one key of `product_id`, due by `deadline`; committed. Returns
    its row id and its on-chain id."""
    order = ShopOrder(
        chain_id=31337,
        chain_order_id="0x" + os.urandom(32).hex(),
        product_id=product_id,
        quantity=1,
        token=NATIVE_COIN,
        amount="1000",
        payer=PAYER,
        status=OrderStatus.CONFIRMED,
        quote_signature="0x",
        quote_expiry=quote_expiry,
        delivery_deadline=deadline,
        access_token_hash="",
    )
    session.add(order)
    session.commit()
    assert order.id is not None
    return order.id, order.chain_order_id
