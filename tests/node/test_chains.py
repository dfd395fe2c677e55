"""One node, three chains at once: three anvils with their own chain ids and block times, an escrow
on each. Every order is paid, delivered and settled on its own chain; a reorganisation on one
leaves the others going; a SIGKILL with all three busy loses and doubles nothing."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from liandong.devtools.simulate import LocalChain, LocalShop
from liandong.store.models import ChainCheckpoint, ChainTx, Delivery, OrderStatus, Payment, ShopOrder
from sqlmodel import Session, col, select
from web3 import Web3

from .test_delivery import ORDER_DELIVERED

MORE_CHAINS = ((31339, 1.0), (31341, 2.0))
"""Besides the first chain (31337, a block per transaction): Local chain B at 1 s, a chain no
profile knows at 2 s."""
CHAIN_IDS = (31337, 31339, 31341)


def _three_chain_shop(shop_factory: Any, keys: int) -> tuple[LocalShop, int]:
    shop: LocalShop = shop_factory(more_chains=MORE_CHAINS)
    product = shop.add_product("multi", [f"M-{n}" for n in range(keys)])
    shop.start()
    return shop, product


def _on_chain_deliveries(chain: LocalChain) -> Counter[str]:
    escrow = Web3.to_checksum_address(chain.record.escrow)
    logs = chain.w3.eth.get_logs({"address": escrow, "fromBlock": 0, "topics": [ORDER_DELIVERED]})
    return Counter("0x" + bytes(entry["topics"][1]).hex() for entry in logs)


def _pay_on_every_chain(shop: LocalShop, product: int, per_chain: int) -> dict[int, list[str]]:
    """`per_chain` orders paid on each chain, each chain's buyers its own dev accounts."""
    paid: dict[int, list[str]] = {}
    for chain_id in CHAIN_IDS:
        paid[chain_id] = []
        for n in range(per_chain):
            buyer = shop.buyer(2 + n % 6, chain_id)
            issued = shop.quote(product, buyer=buyer.account.address, chain_id=chain_id)
            buyer.pay(issued.quote, issued.signature)
            paid[chain_id].append(issued.order.chain_order_id)
    return paid


def _settled(shop: LocalShop, keys: list[str]) -> bool:
    return all((o := shop.order(key)).status == OrderStatus.DELIVERED and o.committed_at for key in keys)


def _check_exactly_once(shop: LocalShop, paid: dict[int, list[str]]) -> None:
    """Every order delivered once, its payment and its settlement on its own chain only."""
    with Session(shop.engine) as session:
        orders = {o.chain_order_id: o for o in session.exec(select(ShopOrder)).all()}
        payments = session.exec(select(Payment.chain_id, Payment.chain_order_id)).all()
        deliveries = Counter(d.order_id for d in session.exec(select(Delivery)).all())
        txs = session.exec(select(ChainTx.chain_id, ChainTx.order_ids)).all()
        checkpoints = {c.chain_id for c in session.exec(select(ChainCheckpoint)).all()}
    assert checkpoints == set(CHAIN_IDS)
    assert sorted(payments) == sorted((chain_id, key) for chain_id, keys in paid.items() for key in keys)
    for chain_id, keys in paid.items():
        assert {orders[key].chain_id for key in keys} == {chain_id}
        assert all(deliveries[orders[key].id] == 1 for key in keys)
        assert _on_chain_deliveries(shop.chain(chain_id)) == Counter(dict.fromkeys(keys, 1))
        ids = {str(orders[key].id) for key in keys}
        sent_here = {i for tx_chain, order_ids in txs if tx_chain == chain_id for i in order_ids.split(",")}
        assert ids <= sent_here
        assert not ids & {
            i for tx_chain, order_ids in txs if tx_chain != chain_id for i in order_ids.split(",")
        }


@pytest.mark.slow
def test_one_node_pays_delivers_and_settles_on_three_chains_and_a_reorg_on_one_stops_no_other(
    shop_factory: Any,
) -> None:
    shop, product = _three_chain_shop(shop_factory, keys=20)
    health = shop.nodes[0].health()
    assert health is not None
    assert [(c["chain_id"], c["network"]) for c in health["chains"]] == [
        (31337, "Local chain A"),
        (31339, "Local chain B"),
        (31341, "Chain 31341"),
    ]
    # Each chain's providers by host alone: a provider URL's path or query often holds its API key.
    assert all(c["providers"][0]["host"] == "127.0.0.1" for c in health["chains"])
    paid = _pay_on_every_chain(shop, product, per_chain=3)
    everything = [key for keys in paid.values() for key in keys]
    shop.wait_for(lambda: _settled(shop, everything), 60, "every order delivered and settled")
    _check_exactly_once(shop, paid)

    # The attack: a quote signed for one chain's escrow, paid on another's. Its EIP-712 domain
    # names the chain and the escrow, so the other escrow refuses it and the order stays unpaid.
    replayed = shop.quote(product, buyer=shop.buyer(7).account.address, chain_id=31341)
    on_first_chain = shop.buyer(7, 31337)
    tx = on_first_chain.pay(replayed.quote, replayed.signature)
    assert on_first_chain.w3.eth.wait_for_transaction_receipt(tx)["status"] == 0  # type: ignore[arg-type]
    assert shop.order(replayed.order.chain_order_id).status == OrderStatus.QUOTED

    # Chain B forks away from before a fresh payment; the other two chains take orders meanwhile.
    chain_b = shop.chain(31339)
    fork_from = int(chain_b.w3.eth.block_number)
    buyer = shop.buyer(7, 31339)
    reorged = shop.quote(product, buyer=buyer.account.address, chain_id=31339)
    buyer.pay(reorged.quote, reorged.signature)
    shop.wait_for(
        lambda: shop.order(reorged.order.chain_order_id).committed_at, 30, "the doomed order settled"
    )
    answer = chain_b.w3.provider.make_request(
        "anvil_reorg", [int(chain_b.w3.eth.block_number) - fork_from, []]
    )  # type: ignore[arg-type]
    assert "error" not in answer, answer
    during = {chain_id: [] for chain_id in CHAIN_IDS} | _pay_on_every_chain_but(shop, product, 31339)
    shop.wait_for(
        lambda: shop.order(reorged.order.chain_order_id).anomaly is not None,
        30,
        "the reorged payment flagged",
    )
    shop.wait_for(
        lambda: _settled(shop, [k for keys in during.values() for k in keys]), 60, "the others settled"
    )
    with Session(shop.engine) as session:
        flagged = session.exec(select(ShopOrder.chain_id).where(col(ShopOrder.anomaly).is_not(None))).all()
    assert flagged == [31339]  # only the reorged chain's order


def _pay_on_every_chain_but(shop: LocalShop, product: int, skipped: int) -> dict[int, list[str]]:
    paid: dict[int, list[str]] = {}
    for chain_id in CHAIN_IDS:
        if chain_id == skipped:
            continue
        buyer = shop.buyer(8, chain_id)
        issued = shop.quote(product, buyer=buyer.account.address, chain_id=chain_id)
        buyer.pay(issued.quote, issued.signature)
        paid[chain_id] = [issued.order.chain_order_id]
    return paid


@pytest.mark.slow
def test_sigkill_with_three_chains_busy_delivers_and_settles_each_order_once_after_restart(
    shop_factory: Any,
) -> None:
    shop, product = _three_chain_shop(shop_factory, keys=30)
    paid = _pay_on_every_chain(shop, product, per_chain=6)
    everything = [key for keys in paid.values() for key in keys]
    # Killed once the first deliveries are in, with payments, deliveries and settlements under way.
    shop.wait_for(lambda: any(shop.order(key).delivered_at for key in everything), 30, "a first delivery")
    time.sleep(0.3)
    shop.kill()
    shop.start()
    shop.wait_for(
        lambda: _settled(shop, everything), 90, "every order delivered and settled after the restart"
    )
    _check_exactly_once(shop, paid)
