"""`liandong escrow …` against a shop on anvil: the balance the audit computes after a paid and
delivered order, and the owner's transactions printed for the owner's wallet, sent as printed by
the owner's dev account (`cast send` with the printed calldata), with clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from liandong.chain.quotes import NATIVE_COIN
from liandong.devtools.simulate import PRICE, LocalShop, dev_account
from web3 import Web3

from tests.cli.runner import run

pytestmark = pytest.mark.slow


def _escrow(shop: LocalShop, *args: str) -> subprocess.CompletedProcess[str]:
    return run({**shop.env(), "COLUMNS": "250"}, "escrow", *args)


def _printed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    printed: dict[str, Any] = json.loads(result.stdout)
    return printed


def _cast_send(shop: LocalShop, tx: dict[str, Any]) -> dict[str, Any]:
    """The printed transaction as the owner sends it: `cast send <to> <data>` with its key."""
    owner = dev_account(0)
    assert tx["from"] == owner.address
    assert tx["chainId"] == shop.record.chain_id
    command = ["cast", "send", tx["to"], tx["data"], "--value", str(int(tx["value"], 16))]
    command += ["--rpc-url", shop.anvil.http_url, "--private-key", "0x" + bytes(owner.key).hex(), "--json"]
    sent = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert sent.returncode == 0, sent.stderr
    receipt: dict[str, Any] = json.loads(sent.stdout)
    assert int(receipt["status"], 16) == 1
    return receipt


def test_balance_withdraw_pause_and_payout_proposal(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("escrowed", ["E-1", "E-2"])
    shop.start()
    issued = shop.quote(product)
    shop.buyer(4).pay(issued.quote, issued.signature)
    order = issued.order.chain_order_id
    shop.wait_for(lambda: shop.order(order).committed_at, 30, "the delivery on-chain")
    open_order = shop.quote(product)  # paid, not delivered: the node is stopped first
    shop.kill()
    shop.buyer(5).pay(open_order.quote, open_order.signature)

    state = _printed(_escrow(shop, "balance", "--json"))
    [native] = [token for token in state["tokens"] if token["token"] == NATIVE_COIN]
    assert (native["escrowed"], native["merchant"], native["held"]) == (PRICE, PRICE, 2 * PRICE)
    assert (native["fees"], native["refund_credits"], state["paused"]) == (0, 0, False)
    assert state["findings"] == []
    table = _escrow(shop, "balance")
    assert table.returncode == 0, table.stderr
    assert "accepting payments" in table.stdout

    w3: Web3 = shop.w3
    payout = state["payout"]
    printed = _escrow(shop, "withdraw")
    tx = _printed(printed)
    assert tx["to"] == shop.record.escrow
    assert tx["function"] == "withdraw(address)"
    assert "cast send" in printed.stderr
    before = w3.eth.get_balance(payout)
    receipt = _cast_send(shop, tx)
    gas = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
    assert w3.eth.get_balance(payout) - before == PRICE - (gas if payout == tx["from"] else 0)
    after = _printed(_escrow(shop, "balance", "--json"))["tokens"][0]
    assert (after["merchant"], after["escrowed"], after["held"]) == (0, PRICE, PRICE)

    _cast_send(shop, _printed(_escrow(shop, "pause")))
    assert _printed(_escrow(shop, "balance", "--json"))["paused"] is True
    again = _escrow(shop, "pause")
    assert again.returncode == 1
    assert "already paused" in again.stderr

    new_payout = dev_account(9).address
    proposed = _escrow(shop, "set-payout", "propose", new_payout)
    assert "Delay 172800 s (2 days)" in proposed.stderr
    _cast_send(shop, _printed(proposed))
    early = _escrow(shop, "set-payout", "apply")
    assert early.returncode == 1
    assert f"the change to {new_payout} can be applied from" in early.stderr
    status = _escrow(shop, "set-payout", "status")
    assert f"pending {new_payout}" in status.stdout

    other_chain = shop.data_dir / "other-chain.json"
    other_chain.write_text(
        json.dumps({**json.loads((shop.data_dir / "deployment.json").read_text()), "chain_id": 1})
    )
    for bad, message in (
        (("unpause", "--deployment", str(other_chain)), "the deployment record is for chain 1"),
        (("withdraw",), "nothing to withdraw"),
        (("withdraw", "--token", "0x1234"), "is not an address"),
        (("set-payout", "propose", "not-an-address"), "is not an address"),
        (("withdraw-fees",), "nothing to withdraw: no fees"),
        (("unpause", "--propose-safe", dev_account(7).address), "must send this transaction, not the Safe"),
    ):
        result = _escrow(shop, *bad)
        assert result.returncode != 0, bad
        assert message in result.stderr, (bad, result.stderr)


def test_a_clear_error_without_a_deployment_record(tmp_path: Path) -> None:
    missing = run({**os.environ, "LIANDONG_DATA_DIR": str(tmp_path)}, "escrow", "balance")
    assert missing.returncode == 1
    assert "no deployment record at" in missing.stderr
