"""Fees fixed at payment: the shop stores each order's fee from `OrderPaid` and settles with it (the
escrow skips terms that differ), and the audit adds fee balances up per recipient."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from liandong.devtools.simulate import PRICE, LocalShop

from .test_audit import _audit, _send_as_operator

SET_FEE = keccak(text="setFee(address,uint16)")[:4]
FIRST, SECOND = "0x" + "f1" * 20, "0x" + "f2" * 20


@pytest.mark.slow
def test_fees_fixed_at_payment_settle_and_audit_per_recipient(shop_factory: Any, tmp_path: Path) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("fees", ["F-1", "F-2"])
    shop.start()
    orders = []
    for n, (recipient, bps) in enumerate(((FIRST, 100), (SECOND, 250))):
        _send_as_operator(shop, SET_FEE + encode(["address", "uint16"], [recipient, bps]))
        shop.wait_for(
            lambda: (
                shop.w3.eth.get_transaction_count(shop.w3.eth.accounts[0], "pending")
                == shop.w3.eth.get_transaction_count(shop.w3.eth.accounts[0])
            ),
            10,
            "setFee mined",
        )
        issued = shop.quote(product)
        shop.buyer(4 + n).pay(issued.quote, issued.signature)
        key = issued.order.chain_order_id
        shop.wait_for(lambda key=key: shop.order(key).committed_at is not None, 30, "the delivery recorded")
        assert shop.order(key).fee_bps == bps
        orders.append(key)

    report_file = tmp_path / "audit.json"
    audited = _audit(shop, "--json", str(report_file))
    assert audited.returncode == 0, audited.stdout + audited.stderr
    report = json.loads(report_file.read_text())
    assert report["findings"] == []
    [book] = report["books"]
    assert book["fees"] == PRICE * 100 // 10_000 + PRICE * 250 // 10_000
    assert {order["order"]: order["fee"] for order in report["orders"]} == {
        orders[0]: PRICE * 100 // 10_000,
        orders[1]: PRICE * 250 // 10_000,
    }
