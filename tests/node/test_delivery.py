"""Pay on-chain → the right key reaches the buyer → the escrow holds the matching commitment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from eth_utils.crypto import keccak
from liandong.simulate import LocalShop as Shop
from liandong.store.models import OrderStatus
from liandong.vault.crypto import delivery_commitment
from web3 import Web3
from websockets.sync.client import connect

ORDER_DELIVERED = "0x" + keccak(text="OrderDelivered(bytes32,bytes32,uint256)").hex()
ORDER_REFUNDED = "0x" + keccak(text="OrderRefunded(bytes32,address,address,uint256,bool)").hex()


def _read_order(shop: Shop, chain_order_id: str, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{shop.api_port}/api/orders/{chain_order_id}", headers={"X-Order-Token": token}
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.load(response)  # type: ignore[no-any-return]


def _events(shop: Shop, topic: str, chain_order_id: str) -> list[Any]:
    return shop.w3.eth.get_logs(
        {
            "address": Web3.to_checksum_address(shop.record.escrow),
            "fromBlock": 0,
            "topics": [topic, chain_order_id],
        }
    )


def test_paid_order_gets_its_key_and_the_commitment_goes_on_chain(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("game-key", ["KEY-AAAA-0001", "KEY-AAAA-0002", "KEY-AAAA-0003"])
    shop.start()
    issued = shop.quote(product, quantity=2)
    order_key = issued.order.chain_order_id
    page = connect(f"ws://127.0.0.1:{shop.api_port}/api/orders/{order_key}/events", open_timeout=5)
    shop.buyer(4).pay(issued.quote, issued.signature)
    assert json.loads(page.recv(timeout=20)) == {"order": order_key, "status": "delivered"}  # pushed
    page.close()

    view = shop.wait_for(
        lambda: (v := _read_order(shop, order_key, issued.access_token))["status"] == "delivered" and v,
        20,
        "delivery",
    )
    assert sorted(view["keys"]) == ["KEY-AAAA-0001", "KEY-AAAA-0002"]
    expected = delivery_commitment(issued.quote.order_id, bytes.fromhex(view["salt"][2:]), view["keys"])
    assert view["commitment"] == "0x" + expected.hex()

    [event] = shop.wait_for(lambda: _events(shop, ORDER_DELIVERED, order_key), 20, "the on-chain record")
    assert bytes(event["data"])[:32] == expected
    order = shop.wait_for(lambda: (o := shop.order(order_key)).committed_at and o, 20, "committed_at")
    assert order.payer == shop.buyer(4).account.address
    stamps = [order.block_time, order.seen_at, order.confirmed_at, order.keys_claimed_at, order.delivered_at]
    assert all(stamps), stamps
    assert (
        order.seen_at
        <= order.confirmed_at
        <= order.keys_claimed_at
        <= order.delivered_at
        <= order.committed_at
    )


def test_wrong_token_reads_nothing(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("gift", ["GIFT-1"])
    shop.start()
    issued = shop.quote(product)
    shop.buyer(4).pay(issued.quote, issued.signature)
    shop.wait_for(
        lambda: shop.order(issued.order.chain_order_id).status == OrderStatus.DELIVERED, 20, "delivery"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        _read_order(shop, issued.order.chain_order_id, "not-the-token")
    assert refused.value.code == 404


def test_two_buyers_racing_for_the_last_key_get_one_key_and_one_refund(shop_factory: Any) -> None:
    shop = shop_factory()
    product = shop.add_product("last-one", ["ONLY-KEY"])
    shop.start()
    first, second = shop.quote(product), shop.quote(product)
    alice, bob = shop.buyer(5), shop.buyer(6)
    bob_before = shop.w3.eth.get_balance(bob.account.address)
    shop.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    alice.pay(first.quote, first.signature)
    bob.pay(second.quote, second.signature)
    shop.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    shop.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]

    def settled() -> list[OrderStatus] | None:
        statuses = sorted(shop.order(i.order.chain_order_id).status for i in (first, second))
        return statuses if statuses == [OrderStatus.DELIVERED, OrderStatus.REFUNDED] else None

    shop.wait_for(settled, 30, "one delivery and one refund")
    refunded = next(
        i for i in (first, second) if shop.order(i.order.chain_order_id).status == OrderStatus.REFUNDED
    )
    assert shop.order(refunded.order.chain_order_id).refund_reason == "out of stock"
    assert _events(shop, ORDER_REFUNDED, refunded.order.chain_order_id)
    if refunded is second:  # bob got his money back, less the gas of his payment
        assert bob_before - shop.w3.eth.get_balance(bob.account.address) < 10**15
