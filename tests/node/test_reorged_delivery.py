"""A payment that a reorganisation takes off the chain after its keys went out is never silent: the
order is flagged "payment reorged" in the abnormal log and the dashboard's alerts."""

from __future__ import annotations

from typing import Any

import pytest
from liandong.chain.indexer import PAYMENT_REORGED
from liandong.devtools.simulate import LocalShop
from liandong.services.stats import AbnormalReason, AlertKind, abnormal_deliveries, alerts
from liandong.store.models import OrderStatus
from sqlmodel import Session


def _rpc(shop: LocalShop, method: str, *params: Any) -> Any:
    answer = shop.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in answer, answer
    return answer.get("result")


@pytest.mark.slow
def test_a_payment_reorged_after_delivery_is_flagged_and_alerted(shop_factory: Any) -> None:
    shop: LocalShop = shop_factory()
    product = shop.add_product("reorged", ["RO-1", "RO-2"])
    shop.start()
    issued = shop.quote(product)
    key = issued.order.chain_order_id
    paid_at = int(shop.w3.eth.block_number)
    shop.buyer(4).pay(issued.quote, issued.signature)
    shop.wait_for(lambda: shop.order(key).committed_at is not None, 30, "delivered and recorded")

    depth = int(shop.w3.eth.block_number) - paid_at  # the payment's block and everything after it
    _rpc(shop, "anvil_reorg", depth, [])
    _rpc(shop, "evm_mine")
    flagged = shop.wait_for(
        lambda: (o := shop.order(key)).anomaly == PAYMENT_REORGED and o, 30, "the order flagged"
    )
    assert flagged.status == OrderStatus.DELIVERED  # the keys are out: nothing pretends otherwise
    with Session(shop.engine) as session:
        log = abnormal_deliveries(session)
        raised = alerts(session)
    assert [alert.kind for alert in raised] == [AlertKind.ANOMALY]
    [entry] = [e for e in log.entries if e.order == key]
    assert AbnormalReason.ANOMALY in entry.reasons
    assert entry.anomaly == PAYMENT_REORGED
