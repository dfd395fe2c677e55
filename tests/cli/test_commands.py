"""The merchant's commands on a shop whose node runs: logins, products, key imports, orders, and a
refund from the command line that the node then sends on-chain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from liandong.devtools.simulate import PRICE, LocalShop
from liandong.store.models import OrderStatus

from tests.cli.runner import run


def test_the_merchant_commands_and_a_refund_sent_by_the_running_node(
    shop_factory: Any, tmp_path: Path
) -> None:
    shop: LocalShop = shop_factory(confirmations=3)
    env = {**shop.env(), "COLUMNS": "250"}

    login = ["merchant", "add", "alice", "--password-stdin"]
    assert run(env, *login, stdin="a long enough password\n").returncode == 0
    taken = run(env, *login, stdin="another long password\n")
    assert taken.returncode == 1, taken.stdout

    dollars = shop.record.tokens["DUSD"]
    created = run(
        env,
        "products",
        "add",
        "CLI-1",
        "CLI product",
        "--price",
        f"native={PRICE}",
        "--price",
        f"{dollars}=5",
    )
    assert created.returncode == 0, created.stderr
    found = re.search(r"Product (\d+) \(CLI-1\) created", created.stdout)
    assert found is not None, created.stdout
    product = found.group(1)
    refused = run(env, "products", "add", "CLI-2", "no price", "--price", "native=-1")
    assert refused.returncode == 1
    assert "invalid product" in refused.stderr
    by_symbol = run(env, "products", "add", "CLI-3", "by symbol", "--price", "DUSD=2.5")
    assert by_symbol.returncode == 0, by_symbol.stderr
    assert re.search(r"CLI-3 .* 2500000 DUSD", run(env, "products", "list").stdout)  # 6 decimals
    unknown = run(env, "products", "add", "CLI-4", "unknown token", "--price", "Base:USDC=1")
    assert unknown.returncode == 1
    assert "the shop knows no USDC on chain 8453" in unknown.stderr

    bad = tmp_path / "bad.txt"
    bad.write_text("NEW-1\nNEW-2\nNEW-\x073\n")
    not_imported = run(env, "keys", "import", product, str(bad))
    assert not_imported.returncode == 1
    assert "nothing imported: line 3: control character U+0007" in not_imported.stderr
    assert "0 / 0" in run(env, "products", "list").stdout  # all or nothing
    good = tmp_path / "good.txt"
    good.write_text("NEW-1\nNEW-2\nNEW-1\nNEW-3\nNEW-4\n")
    imported = run(env, "keys", "import", product, str(good))
    assert imported.returncode == 0, imported.stderr
    assert "Imported 4 key(s); skipped 1 repeated in the file and 0 already in stock" in imported.stdout
    assert run(env, "products", "edit", product, "--unlisted").returncode == 0
    unlisted = run(env, "products", "list").stdout
    assert re.search(r"CLI-1 .* no .* 4 / 4", unlisted), unlisted
    assert run(env, "products", "edit", product, "--listed", "--price", f"native={PRICE}").returncode == 0

    shop.start()
    kept, refunded = shop.quote(int(product)), shop.quote(int(product))
    shop.buyer(4).pay(kept.quote, kept.signature)
    shop.buyer(5).pay(refunded.quote, refunded.signature)
    kept_id, refunded_id = kept.order.chain_order_id, refunded.order.chain_order_id
    shop.wait_for(lambda: shop.order(refunded_id).status == OrderStatus.PAID, 20, "the payments seen")
    asked = run(env, "refund", refunded_id, "--reason", "asked by phone")
    assert asked.returncode == 0, asked.stderr
    assert run(env, "refund", refunded_id).returncode == 1  # already on its way
    for _ in range(3):
        shop.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    shop.wait_for(lambda: shop.order(refunded_id).status == OrderStatus.REFUNDED, 30, "the on-chain refund")
    shop.wait_for(lambda: shop.order(kept_id).committed_at, 30, "the delivery recorded on-chain")

    assert "1 order(s)" in run(env, "orders", "list", "--status", "refunded").stdout
    buyer = shop.buyer(4).account.address
    mine = run(env, "orders", "list", "--product", product, "--buyer", buyer).stdout
    assert "1 order(s)" in mine
    assert kept_id in mine
    shown = run(env, "orders", "show", kept_id)
    assert shown.returncode == 0, shown.stderr
    for event in (
        "quoted",
        "payment seen",
        "confirmed",
        "keys claimed",
        "delivered",
        "delivery recorded on-chain",
    ):
        assert event in shown.stdout, shown.stdout
    assert str(shop.order(kept_id).commitment) in shown.stdout
    assert "asked by phone" in run(env, "orders", "show", refunded_id).stdout
    assert run(env, "orders", "show", "0x" + "00" * 32).returncode == 1
