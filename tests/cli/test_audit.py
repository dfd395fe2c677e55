"""`liandong audit` reads the escrow's books from the chain and reconciles them with the shop's
records: on a chain with planted faults it reports exactly those. `verify-key` checks a buyer's key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak
from liandong.audit.report import AuditedOrder, AuditReport, html_reports
from liandong.chain.escrow import record_deliveries_calldata
from liandong.chain.quotes import NATIVE_COIN
from liandong.chain.settlement import order_terms
from liandong.devtools.simulate import PRICE, LocalShop, dev_operator
from liandong.store.models import OrderStatus
from sqlmodel import Session

from tests.cli.runner import run

PAST_THE_DEADLINE = 26 * 3600  # the delivery window is a day after the quote expires
WITHDRAW = keccak(text="withdraw(address)")[:4]


def _rpc(shop: LocalShop, method: str, *params: Any) -> Any:
    return shop.w3.provider.make_request(method, list(params))["result"]  # type: ignore[arg-type]


def _send_as_operator(shop: LocalShop, data: bytes) -> None:
    """A transaction from the operator key (also the escrow's owner on the dev chain), unmined."""
    base_fee = int(shop.w3.eth.get_block("latest").get("baseFeePerGas", 0))
    operator = dev_operator()
    transaction: dict[str, Any] = {
        "type": 2,
        "chainId": shop.record.chain_id,
        "nonce": shop.w3.eth.get_transaction_count(operator.address, "pending"),
        "to": shop.record.escrow,
        "data": data,
        "value": 0,
        "gas": 300_000,
        "maxFeePerGas": 2 * base_fee + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    signed = operator.sign_transaction(transaction)
    shop.w3.eth.send_raw_transaction(signed.raw_transaction)


def _audit(shop: LocalShop, *extra: str) -> Any:
    wide = {**shop.env(), "COLUMNS": "250"}
    return run(wide, "audit", "--rpc", shop.anvil.http_url, "--escrow", shop.record.escrow, *extra)


def _key_of(shop: LocalShop, chain_order_id: str) -> str:
    order = shop.order(chain_order_id)
    with Session(shop.engine) as session:
        (key,) = shop.vault.delivered_keys(session, order)
        return key


def _plant_a_forged_commitment(shop: LocalShop, product: int) -> str:
    """The shop delivers an order; before its record reaches the chain the node dies, and the
    operator key records a commitment to another key instead. Returns the order's id."""
    _rpc(shop, "evm_setAutomine", False)
    forged = shop.quote(product)
    shop.buyer(7).pay(forged.quote, forged.signature)
    _rpc(shop, "evm_mine")  # the payment alone
    order = forged.order.chain_order_id
    shop.wait_for(lambda: shop.order(order).status == OrderStatus.DELIVERED, 20, "the delivery")
    shop.wait_for(lambda: _rpc(shop, "txpool_status")["pending"] != "0x0", 20, "the shop's record sent")
    shop.kill()
    _rpc(shop, "anvil_dropAllTransactions")
    _send_as_operator(
        shop, record_deliveries_calldata([(order_terms(shop.order(order)), keccak(b"another key"))])
    )
    _rpc(shop, "evm_mine")
    _rpc(shop, "evm_setAutomine", True)
    return order


def test_audit_reports_exactly_the_planted_faults_and_verify_key_checks_keys(
    shop_factory: Any, tmp_path: Path
) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("audited", [f"A-{n}" for n in range(10)])
    shop.start()
    honest = [shop.quote(product) for _ in range(3)]
    for n, issued in enumerate(honest):
        shop.buyer(4 + n).pay(issued.quote, issued.signature)
    orders = [issued.order.chain_order_id for issued in honest]
    shop.wait_for(lambda: all(shop.order(o).committed_at for o in orders), 30, "deliveries on-chain")
    _send_as_operator(shop, WITHDRAW + encode(["address"], [NATIVE_COIN]))  # the merchant's takings
    clean = _audit(shop, "--database-url", shop.settings().resolved_database_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 finding(s)" in clean.stdout

    forged = _plant_a_forged_commitment(shop, product)
    overdue = shop.quote(product)  # a payment the shop (down) never delivered, past its deadline
    paid = shop.buyer(8).pay(overdue.quote, overdue.signature)
    assert shop.w3.eth.wait_for_transaction_receipt(paid, timeout=10)["status"] == 1  # type: ignore[arg-type]
    _rpc(shop, "evm_increaseTime", PAST_THE_DEADLINE)
    _rpc(shop, "evm_mine")

    report_file, page = tmp_path / "audit.json", tmp_path / "audit.html"
    url = shop.settings().resolved_database_url
    audited = _audit(shop, "--database-url", url, "--json", str(report_file), "--html", str(page))
    assert audited.returncode == 1, audited.stdout + audited.stderr
    report = json.loads(report_file.read_text())
    findings = {(finding["kind"], finding["order"]) for finding in report["findings"]}
    assert findings == {("commitment", forged), ("overdue", overdue.order.chain_order_id)}
    assert [(m["kind"], m["amount"]) for m in report["movements"]] == [("withdrawal", 3 * PRICE)]
    [book] = report["books"]
    # Owed: the forged order's takings (the merchant's now) and the overdue payment (escrowed).
    assert (book["merchant"], book["escrowed"]) == (PRICE, PRICE)
    assert book["held"] == book["owed"] == 2 * PRICE
    states = {order["order"]: order["state"] for order in report["orders"]}
    assert states == {**dict.fromkeys([*orders, forged], "delivered"), overdue.order.chain_order_id: "paid"}
    html = page.read_text()
    assert forged in html
    assert "src=" not in html  # standalone: nothing to load
    assert "href=" not in html
    assert forged in audited.stdout

    # From the chain alone (no database) only the overdue payment shows.
    alone = _audit(shop, "--summary")
    assert alone.returncode == 1
    assert "1 finding(s)" in alone.stdout
    assert "overdue" in alone.stdout

    # A buyer checks the keys they got, with the salt the shop gave them.
    verify = ["verify-key", "--rpc", shop.anvil.http_url, "--escrow", shop.record.escrow]
    salt = ["--salt", str(shop.order(orders[1]).salt)]
    good = run(shop.env(), *verify, "--order", orders[1], "--key", _key_of(shop, orders[1]), *salt)
    assert good.returncode == 0, good.stdout + good.stderr
    wrong = run(shop.env(), *verify, "--order", orders[1], "--key", "A-not-mine", *salt)
    assert wrong.returncode == 1
    assert "MISMATCH" in wrong.stderr
    forged_salt = ["--salt", str(shop.order(forged).salt)]
    cheated = run(shop.env(), *verify, "--order", forged, "--key", _key_of(shop, forged), *forged_salt)
    assert cheated.returncode == 1
    assert "MISMATCH" in cheated.stderr


def test_the_audit_covers_every_chain_the_node_serves(shop_factory: Any, tmp_path: Path) -> None:
    """Without --rpc/--escrow: each of the node's chains (LIANDONG_CHAINS too), one report per
    network, each reconciled with the shop's orders of its own chain only."""
    shop: LocalShop = shop_factory(more_chains=[(31339, None)])
    product = shop.add_product("two chains", [f"B-{n}" for n in range(4)])
    shop.start()
    on_a, on_b = shop.quote(product), shop.quote(product, chain_id=31339)
    shop.buyer(4).pay(on_a.quote, on_a.signature)
    shop.buyer(5, 31339).pay(on_b.quote, on_b.signature)
    orders = [on_a.order.chain_order_id, on_b.order.chain_order_id]
    shop.wait_for(lambda: all(shop.order(o).committed_at for o in orders), 30, "deliveries on-chain")

    url = shop.settings().resolved_database_url
    report_file, page = tmp_path / "audit.json", tmp_path / "audit.html"
    wide = {**shop.env(), "COLUMNS": "250"}
    audited = run(wide, "audit", "--database-url", url, "--json", str(report_file), "--html", str(page))
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "0 finding(s) on 2 chain(s): Local chain A 0, Local chain B 0" in audited.stdout
    report = json.loads(report_file.read_text())
    assert report["findings"] == 0
    chains = [(chain["network"], chain["chain_id"], chain["escrow"]) for chain in report["chains"]]
    assert chains == [
        ("Local chain A", shop.record.chain_id, shop.record.escrow),
        ("Local chain B", 31339, shop.chain(31339).record.escrow),
    ]
    assert [[o["order"] for o in chain["orders"]] for chain in report["chains"]] == [[o] for o in orders]
    html = page.read_text()
    assert "Local chain A, chain 31337" in html
    assert "Local chain B, chain 31339" in html

    # One escrow by --rpc/--escrow, the other chain's deliveries in the database are not its own.
    chain_b = shop.chain(31339)
    alone = _audit_of(shop, chain_b.anvil.http_url, chain_b.record.escrow, "--database-url", url)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "0 finding(s)" in alone.stdout
    picked = run(wide, "audit", "--chain", "Local chain B", "--summary")
    assert picked.returncode == 0, picked.stdout + picked.stderr
    assert "on Local chain B (chain 31339)" in picked.stdout
    assert "Local chain A" not in picked.stdout


def _audit_of(shop: LocalShop, rpc_url: str, escrow: str, *extra: str) -> Any:
    return run({**shop.env(), "COLUMNS": "250"}, "audit", "--rpc", rpc_url, "--escrow", escrow, *extra)


def test_the_page_of_several_chains_links_each_to_its_own_explorer() -> None:
    escrow, buyer, tx = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 32
    reports = [
        AuditReport(
            escrow, chain_id, 0, 9, [AuditedOrder("0x" + "44" * 32, buyer, NATIVE_COIN, 1, 0, 1, tx)], [], []
        )
        for chain_id in (8453, 1)
    ]
    page = html_reports(reports)
    assert page.index("Base, chain 8453") < page.index("Ethereum, chain 1)")
    assert f"https://basescan.org/tx/{tx}" in page
    assert f"https://etherscan.io/tx/{tx}" in page
    assert f"https://basescan.org/address/{escrow}" in page
    assert f"https://etherscan.io/address/{buyer}" in page
