"""A payment for an order the shop has no record of (its database restored from a backup older
than the quote, say) is refunded on-chain by the shop, not kept."""

from __future__ import annotations

import secrets
from typing import Any

from liandong.chain.quotes import NATIVE_COIN, Quote, sign_quote
from liandong.devtools.simulate import PRICE, LocalShop, dev_operator
from liandong.store.models import OrderStatus, ShopOrder
from sqlmodel import Session, select


def _status(shop: LocalShop, chain_order_id: str) -> OrderStatus | None:
    with Session(shop.engine) as session:
        return session.exec(
            select(ShopOrder.status).where(ShopOrder.chain_order_id == chain_order_id)
        ).first()


def test_a_payment_the_shop_never_quoted_is_refunded(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("known", ["K-1"])
    shop.start()
    now = int(shop.w3.eth.get_block("latest")["timestamp"])
    quote = Quote(
        secrets.token_bytes(32), product, 1, NATIVE_COIN, PRICE, "0x" + "00" * 20, now + 600, now + 90_000
    )
    signature = sign_quote(quote, shop.domain, "0x" + bytes(dev_operator().key).hex())  # not in the store
    buyer = shop.buyer(4)
    before = shop.w3.eth.get_balance(buyer.account.address)
    receipt = shop.w3.eth.wait_for_transaction_receipt(buyer.pay(quote, signature))  # type: ignore[arg-type]
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    order_key = "0x" + quote.order_id.hex()
    shop.wait_for(
        lambda: _status(shop, order_key) == OrderStatus.REFUNDED, 30, "the unknown payment refunded"
    )
    assert shop.w3.eth.get_balance(buyer.account.address) == before - gas  # every wei back
