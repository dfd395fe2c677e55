"""The merchant's commands against a running `liandong up`, and a refund from the command line."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from liandong.chain.devnet import free_port
from liandong.simulate import LocalShop
from liandong.store.models import OrderStatus

from tests.test_deploy import _read_until_ready, _start_shop, _stop


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["liandong", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def running_shop(tmp_path: Path) -> Iterator[dict[str, str]]:
    data_dir = tmp_path / "shop"
    port, api_port = free_port(), free_port()
    shop = _start_shop(data_dir, port, api_port)
    try:
        _read_until_ready(shop)
        yield {
            **os.environ,
            "LIANDONG_DATA_DIR": str(data_dir),
            "LIANDONG_ANVIL_PORT": str(port),
            "LIANDONG_API_PORT": str(api_port),
            "COLUMNS": "200",
        }
    finally:
        assert _stop(shop) == 0


def test_simulate_and_the_merchant_commands_on_a_running_shop(
    running_shop: dict[str, str], tmp_path: Path
) -> None:
    env = running_shop
    simulated = run(env, "simulate", "--buyers", "3", "--orders", "12", "--rate", "20")
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert "12 of 12 orders delivered" in simulated.stdout

    listed = run(env, "orders", "list", "--status", "delivered")
    assert "12 order(s)" in listed.stdout
    status = run(env, "status")
    assert status.returncode == 0, status.stderr
    assert "checkpoint" in status.stdout

    bad = tmp_path / "bad.txt"
    bad.write_text("NEW-1\nNEW-2\nNEW-\x073\n")
    refused = run(env, "keys", "import", "1", str(bad))
    assert refused.returncode == 1
    assert "nothing imported: line 3: control character U+0007" in refused.stderr
    good = tmp_path / "good.txt"
    good.write_text("NEW-1\nNEW-2\nNEW-1\n")
    imported = run(env, "keys", "import", "1", str(good))
    assert imported.returncode == 0, imported.stderr
    assert "Imported 2 key(s); skipped 1 repeated in the file" in imported.stdout
    products = run(env, "products", "list")
    assert "190 / 202" in products.stdout  # 200 demo keys + 2, less the 12 sold (all of product 1)

    added = run(env, "merchant", "add", "bob", "--password-stdin", stdin="a long enough password\n")
    assert added.returncode == 0, added.stderr
    again = run(env, "merchant", "add", "bob", "--password-stdin", stdin="a long enough password\n")
    assert again.returncode == 1


def test_a_refund_from_the_command_line_is_sent_by_the_running_node(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory(confirmations=50)
    product = shop.add_product("cli-refund", ["C-1"])
    shop.start()
    issued = shop.quote(product)
    shop.buyer(7).pay(issued.quote, issued.signature)
    order = issued.order.chain_order_id
    shop.wait_for(lambda: shop.order(order).status == OrderStatus.PAID, 20, "the payment seen")
    refunded = run(shop.env(), "refund", order, "--reason", "asked by phone")
    assert refunded.returncode == 0, refunded.stderr
    shop.wait_for(lambda: shop.order(order).status == OrderStatus.REFUNDED, 30, "the on-chain refund")
    assert run(shop.env(), "refund", order).returncode == 1  # nothing left to refund
