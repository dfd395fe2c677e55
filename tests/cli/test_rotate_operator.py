"""`liandong escrow rotate-operator` on a running shop: the new key is generated into the keystore
(sealed, never printed), the owner sends the printed `setOperator` as printed, and the running node
switches to the new key by itself: it quotes and settles with it, a quote signed by the old key is
refused by the escrow (nothing taken), and a restarted node still configured with the old key
starts with the new one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from eth_utils.crypto import keccak
from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.devtools.simulate import LocalShop, dev_operator, pay_calldata
from liandong.store.models import ChainTx
from liandong.vault.tables import OPERATOR_KEYS
from sqlmodel import Session, select

from tests.cli.test_escrow import _cast_send, _escrow, _printed

pytestmark = pytest.mark.slow

INVALID_QUOTE_SIGNATURE = "0x" + keccak(text="InvalidQuoteSignature()")[:4].hex()


def _quote(api: httpx.Client, product: int) -> tuple[Quote, bytes, str]:
    issued = api.post("/api/quotes", json={"product_id": product, "token": NATIVE_COIN, "open": True})
    assert issued.status_code == 201, issued.text
    body = issued.json()
    return Quote.from_json(body["quote"]), bytes.fromhex(body["signature"][2:]), body["order"]


def _operator(shop: LocalShop) -> str | None:
    health = shop.nodes[0].health()
    return None if health is None else str(health["operator"])


def test_rotating_the_operator_switches_the_running_node_and_refuses_old_quotes(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("rotated", [f"ROT-{n}" for n in range(4)])
    shop.extra_env["LIANDONG_OPERATOR_CHECK_SECONDS"] = "0.5"
    shop.nodes[0].env = shop.env()
    shop.start()
    api = httpx.Client(base_url=f"http://127.0.0.1:{shop.api_port}", timeout=10)
    old_operator = dev_operator().address
    shop.wait_for(lambda: _operator(shop) == old_operator, 30, "the node on the deployment's operator")
    stale_quote, stale_signature, _ = _quote(api, product)

    printed = _escrow(shop, "rotate-operator")
    tx = _printed(printed)
    assert tx["function"] == "setOperator(address)"
    [new_operator] = tx["args"]
    assert new_operator != old_operator
    assert "Fund it with gas" in printed.stderr
    assert "quotes signed by the old key no longer verify" in printed.stderr
    with Session(shop.engine) as session:
        [(address, status, wrapped)] = session.connection().execute(
            select(OPERATOR_KEYS.c.address, OPERATOR_KEYS.c.status, OPERATOR_KEYS.c.wrapped_key)
        )
    assert (address, status) == (new_operator, "pending")
    listed = _escrow(shop, "operators")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if new_operator in line]
    assert "pending" in row

    shop.w3.provider.make_request("anvil_setBalance", [new_operator, hex(10**19)])  # type: ignore[arg-type]
    _cast_send(shop, tx)
    shop.wait_for(lambda: _operator(shop) == new_operator, 30, "the node on the new operator")

    refused = shop.w3.provider.make_request(
        "eth_call",  # type: ignore[arg-type]
        [
            {
                "from": shop.buyer(4).account.address,
                "to": shop.record.escrow,
                "value": hex(stale_quote.amount),
                "data": "0x" + pay_calldata(stale_quote, stale_signature).hex(),
            },
            "latest",
        ],
    )
    assert refused["error"]["data"] == INVALID_QUOTE_SIGNATURE  # the old key's quote: nothing taken

    fresh_quote, fresh_signature, order = _quote(api, product)
    shop.buyer(4).pay(fresh_quote, fresh_signature)
    shop.wait_for(lambda: shop.order(order).committed_at, 30, "the delivery recorded on-chain")
    with Session(shop.engine) as session:
        senders = {tx.sender for tx in session.exec(select(ChainTx)).all()}
        status = session.connection().execute(select(OPERATOR_KEYS.c.status)).scalar_one()
    assert senders == {new_operator}
    assert status == "active"
    assert bytes(dev_operator().key) not in wrapped

    shop.kill()  # LIANDONG_OPERATOR_KEY still names the old key: the escrow's is taken from the keystore
    shop.start()
    shop.wait_for(lambda: _operator(shop) == new_operator, 30, "the restarted node on the new operator")
    again_quote, again_signature, again_order = _quote(api, product)
    shop.buyer(5).pay(again_quote, again_signature)
    shop.wait_for(lambda: shop.order(again_order).committed_at, 30, "the second delivery on-chain")
