"""Disjoint windows: the shop never hands out keys it may not be able to record before the
deadline, the escrow refuses a late delivery, and a recorded delivery cannot be refunded by the
buyer. The double dip (read the key, wait out the deadline, refund) has no way through."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from liandong.chain.escrow import MIN_DELIVERY_WINDOW
from liandong.chain.settlement import order_terms
from liandong.delivery.engine import WINDOW_TOO_SHORT
from liandong.devtools.simulate import LocalShop, dev_operator
from liandong.store.models import Delivery, OrderStatus
from sqlmodel import Session, select
from web3 import Web3
from web3.exceptions import ContractLogicError

ORDER = "(bytes32,address,address,uint256,uint64,uint16)"
REFUND = keccak(text=f"refund({ORDER})")[:4]
RECORD_DELIVERY = keccak(text=f"recordDelivery({ORDER},bytes32)")[:4]
DELIVERY_WINDOW_CLOSED = keccak(text="DeliveryWindowClosed(bytes32,uint64)")[:4].hex()
WRONG_STATUS = keccak(text="WrongStatus(bytes32,uint8)")[:4].hex()


def _rpc(shop: LocalShop, method: str, *params: Any) -> Any:
    return shop.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _chain_time(shop: LocalShop) -> int:
    return int(shop.w3.eth.get_block("latest")["timestamp"])


def _call(shop: LocalShop, sender: str, data: bytes) -> None:
    shop.w3.eth.call(
        {"from": sender, "to": Web3.to_checksum_address(shop.record.escrow), "data": data}  # type: ignore[typeddict-item]
    )


def _deliveries(shop: LocalShop, order_id: int | None) -> int:
    with Session(shop.engine) as session:
        return len(session.exec(select(Delivery).where(Delivery.order_id == order_id)).all())


@pytest.mark.slow
def test_the_double_dip_has_no_way_through(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory(confirmations=1)
    product = shop.add_product("window", [f"W-{n}" for n in range(5)])
    shop.start()

    # An order delivered and recorded in time: its buyer can no longer refund it, ever.
    delivered = shop.quote(product, delivery_window=MIN_DELIVERY_WINDOW)
    honest = shop.buyer(4)
    honest.pay(delivered.quote, delivered.signature)
    _rpc(shop, "evm_mine")  # its confirmation
    key = delivered.order.chain_order_id
    shop.wait_for(lambda: shop.order(key).committed_at is not None, 30, "the delivery recorded")

    # An order whose confirmation comes 10 minutes before its deadline (inside the 15-minute
    # margin): refunded, never delivered.
    close = shop.quote(product, delivery_window=MIN_DELIVERY_WINDOW)
    shop.buyer(5).pay(close.quote, close.signature)
    close_key = close.order.chain_order_id
    shop.wait_for(lambda: shop.order(close_key).status == OrderStatus.PAID, 20, "the payment seen")
    _rpc(shop, "evm_increaseTime", close.quote.delivery_deadline - _chain_time(shop) - 600)
    _rpc(shop, "evm_mine")
    refunded = shop.wait_for(
        lambda: (o := shop.order(close_key)).status == OrderStatus.REFUNDED and o, 30, "the refund on-chain"
    )
    assert refunded.refund_reason == WINDOW_TOO_SHORT
    assert refunded.delivered_at is None
    assert refunded.commitment is None
    assert _deliveries(shop, refunded.id) == 0

    # Past the first order's deadline its buyer tries to refund it: the escrow says it is delivered.
    _rpc(shop, "evm_increaseTime", delivered.quote.delivery_deadline - _chain_time(shop) + 60)
    _rpc(shop, "evm_mine")
    terms = order_terms(shop.order(key)).as_abi()
    with pytest.raises(ContractLogicError) as refused:
        _call(shop, honest.account.address, REFUND + encode([ORDER], [terms]))
    assert WRONG_STATUS in str(refused.value.data)

    # A payment the shop (down) could not deliver in its window: the escrow refuses the late
    # delivery, and the shop, back, refunds it instead of handing out its keys.
    late = shop.quote(product, delivery_window=MIN_DELIVERY_WINDOW)
    shop.kill()
    late_buyer = shop.buyer(6)
    paid = late_buyer.pay(late.quote, late.signature)
    assert shop.w3.eth.wait_for_transaction_receipt(paid, timeout=10)["status"] == 1  # type: ignore[arg-type]
    _rpc(shop, "evm_increaseTime", late.quote.delivery_deadline - _chain_time(shop) + 60)
    _rpc(shop, "evm_mine")
    late_terms = late.quote.order_terms(late_buyer.account.address)
    with pytest.raises(ContractLogicError) as too_late:
        _call(
            shop,
            dev_operator().address,
            RECORD_DELIVERY + encode([ORDER, "bytes32"], [late_terms, bytes(32)]),
        )
    assert DELIVERY_WINDOW_CLOSED in str(too_late.value.data)
    shop.start()
    late_key = late.order.chain_order_id
    gone = shop.wait_for(
        lambda: (o := shop.order(late_key)).status == OrderStatus.REFUNDED and o, 30, "the late one refunded"
    )
    assert gone.refund_reason == WINDOW_TOO_SHORT
    assert _deliveries(shop, gone.id) == 0
