"""GET /api/merchant/funds: the Funds panel's figures, read from a real escrow on anvil."""

from __future__ import annotations

from typing import Any

from liandong.chain.quotes import NATIVE_COIN, Quote
from liandong.devtools.simulate import DevBuyer, dev_account, dev_operator
from web3 import Web3

from tests.api.conftest import PRICE, Api, ApiFactory, Chain

NATIVE = Web3.to_checksum_address(NATIVE_COIN)


def native_books(funds: dict[str, Any]) -> dict[str, Any]:
    (books,) = [book for book in funds["tokens"] if book["token"] == NATIVE]
    return books


def test_a_paid_order_is_escrowed_its_delivery_waits_and_the_operator_is_short_of_gas(
    api_factory: ApiFactory, chain: Chain
) -> None:
    with api_factory(rpc_url=chain.rpc_url, operator_balance_alert_batches=10**9) as api:
        stats = api.merchant_token("stats:read")
        product = api.add_product("funds-card", ["F-1"], api.merchant_token("products:write", "keys:import"))
        issued = api.client.post(
            "/api/quotes", json={"product_id": product, "token": NATIVE_COIN, "open": True}
        ).json()
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        buyer = DevBuyer(w3, chain.record.escrow, dev_account(5), chain.record.chain_id)
        paid = buyer.pay(Quote.from_json(issued["quote"]), bytes.fromhex(issued["signature"][2:]))
        assert w3.eth.wait_for_transaction_receipt(paid)["status"] == 1
        api.deliver(issued["order"], buyer.account.address)  # in the shop; the sender is not running

        answer = api.client.get("/api/merchant/funds", headers=stats)
        assert answer.status_code == 200, answer.text
        funds = answer.json()

    assert (funds["chain_id"], funds["escrow"]) == (chain.record.chain_id, chain.record.escrow)
    assert funds["block"] == w3.eth.block_number
    books = native_books(funds)
    assert (books["escrowed"], books["merchant"], books["fees"], books["refund_credits"]) == (
        PRICE,
        "0",
        "0",
        "0",
    )
    assert (
        books["held"] == books["owed"] == PRICE
    )  # not recorded on-chain: still escrowed, not the merchant's
    assert funds["findings"] == []
    settlement = funds["settlement"]
    assert (settlement["waiting"], settlement["lagging"], settlement["alert_seconds"]) == (1, 0, 300.0)
    assert settlement["oldest_seconds"] >= 0
    operator = funds["operator"]
    assert operator["address"] == dev_operator().address
    assert int(operator["balance"]) == w3.eth.get_balance(dev_operator().address)
    assert operator["alert_batches"] == 10**9
    assert operator["low"] is True
    assert int(operator["needed"]) > int(operator["balance"])


def test_a_chain_that_does_not_answer_makes_the_panel_unavailable(api: Api) -> None:
    api.context.chains[api.context.default_chain].rpc_url = "http://127.0.0.1:9"  # the discard port
    answer = api.client.get("/api/merchant/funds", headers=api.merchant_token("stats:read"))
    assert answer.status_code == 503
    assert "did not answer" in answer.json()["detail"]


def test_the_funds_of_a_chain_the_shop_does_not_serve_are_not_found(api: Api) -> None:
    answer = api.client.get("/api/merchant/funds?chain_id=1", headers=api.merchant_token("stats:read"))
    assert answer.status_code == 404
    assert "no payments on chain 1" in answer.json()["detail"]
