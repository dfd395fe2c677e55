"""The dashboard's alerts (on the efficiency figures the dashboard reads): settlement lag, the
operator's balance against the gas of the next batches, anomalies (a payment reorged after the keys
went out)."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import timedelta

import httpx
from liandong.core.config import Settings
from liandong.delivery.webhook import SIGNATURE_HEADER, verify_webhook_signature
from liandong.services.alerts import AlertNotifier
from liandong.services.stats import AlertKind, alerts, efficiency
from liandong.store.models import OperatorStatus, OrderStatus, Product, ShopOrder, utcnow
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session

from tests.peers import Endpoint


def _order(session: Session, product_id: int, **fields: object) -> ShopOrder:
    order = ShopOrder(
        chain_order_id="0x" + secrets.token_hex(32),
        product_id=product_id,
        quantity=1,
        token="0x" + "00" * 20,
        amount="1",
        quote_signature="",
        quote_expiry=0,
        delivery_deadline=0,
        access_token_hash="",
        **{"chain_id": 1, **fields},  # type: ignore[arg-type]
    )
    session.add(order)
    return order


def test_settlement_lag_operator_balance_and_anomalies_alert(engine: Engine) -> None:
    now = utcnow()
    with Session(engine) as session:
        product = Product(sku="a", name="a")
        session.add(product)
        session.flush()
        assert product.id is not None
        assert alerts(session) == []
        delivered = {"status": OrderStatus.DELIVERED, "block_time": now, "seen_at": now}
        _order(session, product.id, delivered_at=now - timedelta(minutes=10), **delivered)  # lagging
        lagging_on_base = now - timedelta(minutes=20)
        _order(session, product.id, chain_id=8453, delivered_at=lagging_on_base, **delivered)
        _order(session, product.id, delivered_at=now - timedelta(seconds=5), **delivered)  # just now
        _order(
            session, product.id, delivered_at=now, committed_at=now, anomaly="payment reorged", **delivered
        )
        session.add(
            OperatorStatus(
                chain_id=1,
                address="0x" + "aa" * 20,
                balance=str(10**16),
                max_fee_per_gas=str(10**9),
                batch_gas=600_000,
            )
        )
        session.commit()

        found = {
            alert.kind: alert for alert in alerts(session, settlement_lag_seconds=300, balance_batches=20)
        }
        lag = found[AlertKind.SETTLEMENT_LAG]
        assert lag.count == 2
        assert [(c.chain_id, c.network, c.count) for c in lag.by_chain] == [
            (1, "Ethereum", 1),
            (8453, "Base", 1),
        ]
        assert "(Ethereum 1, Base 1)" in lag.detail  # the webhook's text names the networks too
        balance = found[AlertKind.OPERATOR_BALANCE]  # 0.01 ETH < 20 batches of 600k gas at 1 gwei = 0.012 ETH
        assert (balance.chain_id, balance.network) == (1, "Ethereum")
        assert "on Ethereum" in balance.detail
        assert found[AlertKind.ANOMALY].count == 1
        assert [a.kind for a in efficiency(session).alerts] == list(found)

        relaxed = alerts(session, settlement_lag_seconds=3600, balance_batches=10)
        assert [alert.kind for alert in relaxed] == [AlertKind.ANOMALY]
        on_base = alerts(session, settlement_lag_seconds=300, balance_batches=20, chain_id=8453)
        assert [(alert.kind, alert.count) for alert in on_base] == [(AlertKind.SETTLEMENT_LAG, 1)]


def test_alerts_reach_the_merchants_webhook_signed_once_then_as_reminders(
    engine: Engine, endpoint: Endpoint
) -> None:
    settings = Settings(
        webhook_url=endpoint.url,
        webhook_secret=SecretStr("alert-secret"),
        alert_repeat_seconds=3600,
    )
    notifier = AlertNotifier(engine, settings)
    with Session(engine) as session:
        product = Product(sku="hook", name="hook")
        session.add(product)
        session.flush()
        assert product.id is not None
        _order(session, product.id, status=OrderStatus.DELIVERED, anomaly="payment reorged")
        session.commit()

    async def look(status: int) -> list[AlertKind]:
        endpoint.status = status
        async with httpx.AsyncClient(timeout=5) as client:
            return [alert.kind for alert in await notifier.check(client)]

    assert asyncio.run(look(500)) == []  # the merchant's system is down: not counted as told
    assert asyncio.run(look(200)) == [AlertKind.ANOMALY]
    assert asyncio.run(look(200)) == []  # told already; reminded only after alert_repeat_seconds
    assert len(endpoint.requests) == 2
    request = endpoint.requests[-1]
    verify_webhook_signature("alert-secret", request.headers[SIGNATURE_HEADER], request.body)
    told = json.loads(request.body)
    assert (told["event"], told["kind"], told["count"]) == ("shop.alert", "anomaly", 1)

    notifier.settings = settings.model_copy(update={"alert_repeat_seconds": 0})
    assert asyncio.run(look(200)) == [AlertKind.ANOMALY]  # a reminder while it lasts
