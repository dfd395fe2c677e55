"""A block-tag confirmation policy on a real node and a real chain: under `safe`, an order's keys
wait until the chain's safe block has passed the payment's block, and the order page hears how far
that still is.

anvil's `--slots-in-an-epoch N` makes its `safe` block trail the head by N blocks (and `finalized`
by 2N), so mining blocks one by one walks the safe block up to the payment's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.simulate import LocalShop
from liandong.store.models import OrderStatus
from websockets.sync.client import ClientConnection, connect

SLOTS = 4
"""anvil's safe block is this many blocks below its head."""


@pytest.fixture
def tagged_shop(tmp_path: Path) -> Iterator[Callable[[str], LocalShop]]:
    """A shop whose node confirms by block tag `tag`, on an anvil whose tags trail the head."""
    shops: list[LocalShop] = []

    def make(tag: str) -> LocalShop:
        anvil = Anvil(extra_args=["--slots-in-an-epoch", str(SLOTS)]).start()
        record = deploy_local_escrow(anvil.http_url, tmp_path / "deployment.json")
        shop = LocalShop(anvil, record, tmp_path, extra_env={"LIANDONG_CONFIRMATIONS": tag})
        shops.append(shop)
        return shop

    yield make
    for shop in shops:
        shop.kill()
        shop.anvil.stop()


def _rpc(shop: LocalShop, method: str, *params: Any) -> Any:
    return shop.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _next_order_event(page: ClientConnection, timeout: float = 20) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(page.recv(timeout=timeout))
        if event.get("type") == "order":
            return event


def _until(page: ClientConnection, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while not condition(event := _next_order_event(page)):
        pass
    return event


def test_an_order_under_the_safe_policy_waits_for_the_safe_block_then_is_delivered(
    tagged_shop: Callable[[str], LocalShop],
) -> None:
    shop = tagged_shop("safe")
    product = shop.add_product("tagged", ["SAFE-KEY-1"])
    shop.start()
    issued = shop.quote(product)
    order_key = issued.order.chain_order_id
    page = connect(f"ws://127.0.0.1:{shop.api_port}/api/orders/{order_key}/events", open_timeout=5)
    page.send(json.dumps({"type": "auth", "token": issued.access_token}))
    assert json.loads(page.recv(timeout=10))["type"] == "ready"

    shop.buyer(4).pay(issued.quote, issued.signature)  # automining: the payment's block is the head
    paid = _next_order_event(page)
    payment_block = int(shop.w3.eth.block_number)
    assert int(shop.w3.eth.get_block("safe")["number"]) == payment_block - SLOTS
    assert (paid["status"], paid["awaiting"], paid["blocks_left"]) == ("paid", "safe", SLOTS)
    assert "required" not in paid  # a tag policy says no "n of N"

    for left in range(SLOTS - 1, 0, -1):  # the safe block climbs, still below the payment's block
        _rpc(shop, "evm_mine")
        waiting = _until(page, lambda event, left=left: event.get("blocks_left") == left)  # type: ignore[misc]
        assert waiting["status"] == "paid"
        assert shop.order(order_key).status == OrderStatus.PAID  # the node saw this head: no keys yet

    _rpc(shop, "evm_mine")  # the safe block is now the payment's block
    confirmed = _until(page, lambda event: event["status"] != "paid")
    assert (confirmed["status"], confirmed["awaiting"], confirmed["blocks_left"]) == ("confirmed", "safe", 0)
    assert _until(page, lambda event: event["status"] == "delivered")
    page.close()
    order = shop.wait_for(lambda: (o := shop.order(order_key)).committed_at and o, 20, "the on-chain record")
    assert order.status == OrderStatus.DELIVERED
    assert order.confirmed_at is not None
    assert order.seen_at is not None
    assert order.seen_at < order.confirmed_at
