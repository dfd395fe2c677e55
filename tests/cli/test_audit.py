"""`liandong audit` reads the escrow's books from the chain and reconciles them with the shop's
records: on a chain with planted faults it reports exactly those; `verify-key` checks a buyer's key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liandong.simulate import LocalShop
from liandong.store.models import CardKey, Delivery, OrderStatus
from sqlmodel import Session, col, select

from tests.cli.test_commands import run

TWO_HOURS = 2 * 3600


def test_audit_finds_exactly_the_planted_faults_and_verify_key_checks_a_key(
    shop_factory: Any, tmp_path: Path
) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("audited", [f"A-{n}" for n in range(10)])
    shop.start()
    delivered = [shop.quote(product) for _ in range(3)]
    for n, issued in enumerate(delivered):
        shop.buyer(4 + n).pay(issued.quote, issued.signature)
    keys = [issued.order.chain_order_id for issued in delivered]
    shop.wait_for(lambda: all(shop.order(k).committed_at for k in keys), 30, "deliveries on-chain")
    honest = run(shop.env(), "audit", "--rpc", shop.anvil.http_url, "--escrow", shop.record.escrow)
    assert honest.returncode == 0, honest.stdout + honest.stderr
    assert "0 finding(s)" in honest.stdout

    # Planted 1: the shop's records now hold another key than the one committed on-chain.
    tampered = shop.order(keys[0])
    with Session(shop.engine) as session:
        line = session.exec(select(Delivery).where(Delivery.order_id == tampered.id)).one()
        spare = session.exec(select(CardKey).where(col(CardKey.order_id).is_(None))).first()
        assert spare is not None
        line.card_key_id, spare.order_id = spare.id, tampered.id  # type: ignore[assignment]
        session.add_all([line, spare])
        session.commit()
    # Planted 2: a payment the shop never delivered, past its deadline.
    shop.kill()
    overdue = shop.quote(product)
    shop.buyer(8).pay(overdue.quote, overdue.signature)
    shop.w3.provider.make_request("evm_increaseTime", [TWO_HOURS])  # type: ignore[arg-type]
    shop.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    report_file, page = tmp_path / "audit.json", tmp_path / "audit.html"
    audited = run(
        shop.env(),
        "audit",
        "--rpc",
        shop.anvil.http_url,
        "--escrow",
        shop.record.escrow,
        "--database-url",
        shop.settings().resolved_database_url,
        "--json",
        str(report_file),
        "--html",
        str(page),
    )
    assert audited.returncode == 1, audited.stdout + audited.stderr
    report = json.loads(report_file.read_text())
    findings = {(finding["kind"], finding["order"]) for finding in report["findings"]}
    assert findings == {("commitment", keys[0]), ("overdue", overdue.order.chain_order_id)}
    [book] = report["books"]
    assert book["held"] == book["owed"] == 4 * int(overdue.order.amount)  # 3 delivered (no fee) + 1 escrowed
    assert keys[0] in page.read_text()
    assert shop.order(overdue.order.chain_order_id).status == OrderStatus.QUOTED  # the node never saw it

    # A buyer checks their key with what the shop gave them: the key and the salt.
    buyer_order = shop.order(keys[1])
    with Session(shop.engine) as session:
        ciphertext = session.exec(
            select(CardKey.ciphertext).join(Delivery).where(Delivery.order_id == buyer_order.id)
        ).one()
        key = shop.vault.decrypt(session, product, ciphertext)
    verify = ["verify-key", "--rpc", shop.anvil.http_url, "--escrow", shop.record.escrow, "--order", keys[1]]
    salt = ["--salt", str(buyer_order.salt)]
    assert run(shop.env(), *verify, "--key", key, *salt).returncode == 0
    wrong = run(shop.env(), *verify, "--key", "A-not-mine", *salt)
    assert wrong.returncode == 1
    assert "MISMATCH" in wrong.stderr
