"""The API in process (FastAPI's TestClient) over the real services, a real SQLite database and
an escrow deployed on a real anvil; the node's loops (indexer, sender) are not running here."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from liandong.api.app import create_app
from liandong.api.deps import ShopContext
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.quotes import NATIVE_COIN, EscrowDomain
from liandong.chain.settlement import SettlementSender
from liandong.core.config import Settings
from liandong.delivery.engine import DeliveryEngine
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.simulate import dev_operator
from liandong.events import OrderEventHub
from liandong.services.merchant_auth import create_api_token, create_merchant
from liandong.store.models import OrderStatus, ShopOrder
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session, select

MERCHANT = ("merchant", "correct horse battery")
PRICE = "10000000000000000"
OPERATOR_KEY = "0x" + bytes(dev_operator().key).hex()


@dataclass(frozen=True)
class Chain:
    rpc_url: str
    record: DeploymentRecord


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    anvil = Anvil().start()
    try:
        deployment = tmp_path_factory.mktemp("chain") / "deployment.json"
        yield Chain(anvil.http_url, deploy_local_escrow(anvil.http_url, deployment))
    finally:
        anvil.stop()


@dataclass
class Api:
    client: TestClient
    context: ShopContext
    delivery: DeliveryEngine

    def merchant_token(self, *scopes: str) -> dict[str, str]:
        with Session(self.context.engine) as session:
            token, _ = create_api_token(session, 1, "tests", list(scopes))
        return {"Authorization": f"Bearer {token}"}

    def add_product(self, sku: str, keys: list[str], headers: dict[str, str]) -> int:
        created = self.client.post(
            "/api/merchant/products",
            json={"sku": sku, "name": sku, "prices": [{"token": NATIVE_COIN, "amount": PRICE}]},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        product_id: int = created.json()["id"]
        if keys:
            self.import_keys(product_id, keys, headers)
        return product_id

    def import_keys(self, product_id: int, keys: list[str], headers: dict[str, str]) -> None:
        imported = self.client.post(
            f"/api/merchant/products/{product_id}/keys",
            content="\n".join(keys),
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert imported.status_code == 201, imported.text

    def deliver(self, chain_order_id: str, payer: str) -> None:
        """What the indexer does on a confirmed payment, then the real engine's delivery batch."""
        with Session(self.context.engine) as session:
            order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id)).one()
            order.status, order.payer = OrderStatus.CONFIRMED, payer
            session.add(order)
            session.commit()
            assert order.id is not None
            order_id = order.id
        outcome = self.delivery.deliver([order_id])
        assert outcome.notices, "the order was not delivered"


PUBLIC_URL = "http://shop.test"
"""The shop's public address in these tests; the client's requests come from its pages (Origin)."""


@contextlib.contextmanager
def build_api(tmp_path: Path, engine: Engine, chain: Chain, **overrides: Any) -> Iterator[Api]:
    """The app over real services; `overrides` are settings (e.g. SMTP, limits)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "public_url": PUBLIC_URL,
        "quote_rate_limit": "1000/minute",
        "key_rate_limit": "1000/minute",
        "status_rate_limit": "1000/minute",
        "signin_rate_limit": "1000/minute",
        "ws_rate_limit": "1000/minute",
        **overrides,
    }
    settings = Settings(**values, _env_file=None)  # type: ignore[call-arg]
    vault = Vault(Keyring(MasterKey.generate()))
    hub = OrderEventHub()
    templates = TemplateBook()
    router = ChannelRouter(settings, hub, templates)
    escrow = chain.record
    sender = SettlementSender(engine, chain.rpc_url, escrow.chain_id, escrow.escrow, OPERATOR_KEY)
    delivery = DeliveryEngine(engine, vault, [], sender.submit, hub=hub, public_url=PUBLIC_URL)
    with Session(engine) as session:
        create_merchant(session, *MERCHANT)

    def channels_changed() -> None:
        with Session(engine) as session:
            templates.reload(session)
            delivery.channels = router.ordered(session)

    context = ShopContext(
        settings=settings,
        engine=engine,
        vault=vault,
        hub=hub,
        domain=EscrowDomain(escrow.chain_id, escrow.escrow),
        operator_key=OPERATOR_KEY,
        settle=sender.submit,
        resend=delivery.notify,
        channels=router,
        templates=templates,
        on_channels_changed=channels_changed,
        health=lambda: {"status": "ok"},
    )
    with TestClient(create_app(context), headers={"Origin": PUBLIC_URL}) as client:
        yield Api(client, context, delivery)


ApiFactory = Callable[..., contextlib.AbstractContextManager[Api]]


@pytest.fixture
def api_factory(tmp_path: Path, engine: Engine, chain: Chain) -> ApiFactory:
    """Builds the app with settings of the test's own: `with api_factory(smtp_host=…) as api:`."""
    return functools.partial(build_api, tmp_path, engine, chain)


@pytest.fixture
def api(tmp_path: Path, engine: Engine, chain: Chain) -> Iterator[Api]:
    with build_api(tmp_path, engine, chain) as built:
        yield built
