"""Pay on-chain → the right key reaches the buyer → the escrow holds the matching commitment."""

from __future__ import annotations

import json
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.devtools.simulate import LocalShop as Shop
from liandong.store.models import OrderStatus
from liandong.vault.crypto import delivery_commitment
from liandong.vault.transport import open_sealed, order_aad
from web3 import Web3
from websockets.sync.client import connect

ORDER_DELIVERED = "0x" + keccak(text="OrderDelivered(bytes32,bytes32,uint256)").hex()
ORDER_REFUNDED = "0x" + keccak(text="OrderRefunded(bytes32,address,address,uint256,bool)").hex()


def _api(shop: Shop) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{shop.api_port}", timeout=10)


def _events(shop: Shop, topic: str, chain_order_id: str) -> list[Any]:
    return shop.w3.eth.get_logs(
        {
            "address": Web3.to_checksum_address(shop.record.escrow),
            "fromBlock": 0,
            "topics": [topic, chain_order_id],
        }
    )


def test_quote_pay_and_read_the_key_with_a_wallet_signature_matching_the_chain(shop_factory: Any) -> None:
    """The buyer's whole path over the API: quote → `pay` from the wallet → live status → sign in
    with the wallet → keys sealed to the browser's key → decrypted → the on-chain commitment."""
    shop = shop_factory(confirmations=1)
    product = shop.add_product("game-key", ["KEY-AAAA-0001", "KEY-AAAA-0002", "KEY-AAAA-0003"])
    shop.start()
    buyer = shop.buyer(4)
    api = _api(shop)
    request = {"product_id": product, "quantity": 2, "token": NATIVE_COIN, "buyer": buyer.account.address}
    issued = api.post("/api/quotes", json=request).json()
    order_key = issued["order"]
    quote = Quote.from_json(issued["quote"])
    page = connect(f"ws://127.0.0.1:{shop.api_port}/api/orders/{order_key}/events", open_timeout=5)
    page.send(json.dumps({"type": "auth", "token": issued["access_token"]}))  # the stream's proof
    assert json.loads(page.recv(timeout=10))["type"] == "ready"
    buyer.pay(quote, bytes.fromhex(issued["signature"][2:]))
    paid = json.loads(page.recv(timeout=20))
    assert (paid["status"], paid["confirmations"], paid["required"]) == ("paid", 0, 1)
    assert paid["payer"] == buyer.account.address
    shop.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # the confirmation
    statuses = [json.loads(page.recv(timeout=20))["status"] for _ in range(2)]
    assert statuses == ["confirmed", "delivered"]
    page.close()

    challenge = api.post("/api/buyer/challenge", json={"address": buyer.account.address}).json()
    signature = buyer.account.sign_message(encode_defunct(text=challenge["message"])).signature
    session = api.post(
        "/api/buyer/session", json={"message": challenge["message"], "signature": "0x" + signature.hex()}
    ).json()
    browser = X25519PrivateKey.generate()
    public = "0x" + browser.public_key().public_bytes_raw().hex()
    sealed = api.post(
        f"/api/orders/{order_key}/keys",
        json={"public_key": public},
        headers={"Authorization": f"Bearer {session['token']}"},
    ).json()
    keys = json.loads(open_sealed(sealed["box"], browser.private_bytes_raw(), order_aad(order_key)))
    assert sorted(keys) == ["KEY-AAAA-0001", "KEY-AAAA-0002"]
    expected = delivery_commitment(quote.order_id, bytes.fromhex(sealed["salt"][2:]), keys)
    assert sealed["commitment"] == "0x" + expected.hex()

    [event] = shop.wait_for(lambda: _events(shop, ORDER_DELIVERED, order_key), 20, "the on-chain record")
    assert bytes(event["data"])[:32] == expected
    order = shop.wait_for(lambda: (o := shop.order(order_key)).committed_at and o, 20, "committed_at")
    assert order.payer == buyer.account.address
    stamps = [order.block_time, order.seen_at, order.confirmed_at, order.keys_claimed_at, order.delivered_at]
    assert all(stamps), stamps
    assert (
        order.seen_at
        <= order.confirmed_at
        <= order.keys_claimed_at
        <= order.delivered_at
        <= order.committed_at
    )


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
