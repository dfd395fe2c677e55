"""The API in process (FastAPI's TestClient) over a node's real parts (`assemble`), a real SQLite
database and an escrow deployed on a real anvil; the node's loops (indexer, sender) are not running
here: a test delivers by hand (`Api.deliver`)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from liandong.api.deps import ShopContext
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.quotes import NATIVE_COIN
from liandong.core.config import Settings
from liandong.delivery.engine import DeliveryEngine
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.simulate import dev_operator
from liandong.runtime.node import Node, assemble
from liandong.services.merchant_auth import create_api_token, create_merchant
from liandong.store.models import OrderStatus, ShopOrder
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
    node: Node

    @property
    def context(self) -> ShopContext:
        return self.node.context

    @property
    def delivery(self) -> DeliveryEngine:
        return self.node.delivery

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
    """The node's app over its real parts (`assemble`) on the test's database; `overrides` are
    settings (e.g. SMTP, limits)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": engine.url.render_as_string(hide_password=False),
        "public_url": PUBLIC_URL,
        "rpc_url": chain.rpc_url,
        "operator_key": OPERATOR_KEY,
        "quote_rate_limit": "1000/minute",
        "key_rate_limit": "1000/minute",
        "status_rate_limit": "1000/minute",
        "signin_rate_limit": "1000/minute",
        "ws_rate_limit": "1000/minute",
        **overrides,
    }
    node = assemble(Settings(**values, _env_file=None), chain.record, engine=engine)  # type: ignore[call-arg]
    with Session(engine) as session:
        create_merchant(session, *MERCHANT)
    with TestClient(node.app, headers={"Origin": PUBLIC_URL}) as client:
        yield Api(client, node)


ApiFactory = Callable[..., contextlib.AbstractContextManager[Api]]


@pytest.fixture
def api_factory(tmp_path: Path, engine: Engine, chain: Chain) -> ApiFactory:
    """Builds the app with settings of the test's own: `with api_factory(smtp_host=…) as api:`."""
    return functools.partial(build_api, tmp_path, engine, chain)


@pytest.fixture
def api(tmp_path: Path, engine: Engine, chain: Chain) -> Iterator[Api]:
    with build_api(tmp_path, engine, chain) as built:
        yield built
