"""A whole shop for the node tests: a real anvil, the escrow deployed, a node process, a buyer."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from liandong.chain.deploy import deploy_local_escrow
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.devnet import Anvil, free_port
from liandong.chain.quotes import NATIVE_COIN, EscrowDomain
from liandong.core.config import Settings
from liandong.services.orders import IssuedQuote, create_quote
from liandong.simulate import DevBuyer, dev_account
from liandong.store.db import make_engine, migrate
from liandong.store.models import Product, ProductPrice, ShopOrder
from liandong.vault.crypto import load_keyring
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session, select
from web3 import Web3

OPERATOR = dev_account(0)
PRICE = 10**15


@dataclass
class Shop:
    anvil: Anvil
    record: DeploymentRecord
    data_dir: Path
    confirmations: int = 0
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        url = self.settings().resolved_database_url
        migrate(url)
        self.engine = make_engine(url)
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.http_url))
        self.vault = Vault(load_keyring(self.settings()))
        self.domain = EscrowDomain(self.record.chain_id, self.record.escrow)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LIANDONG_DATA_DIR": str(self.data_dir),
            "LIANDONG_RPC_URL": self.anvil.http_url,
            "LIANDONG_OPERATOR_KEY": "0x" + bytes(OPERATOR.key).hex(),
            "LIANDONG_API_PORT": str(self.api_port),
            "LIANDONG_CONFIRMATIONS": str(self.confirmations),
            "LIANDONG_SETTLEMENT_BATCH_INTERVAL": "0.1",
        }

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir)

    def start(self) -> None:
        log = (self.data_dir / "node.log").open("ab")
        self.process = subprocess.Popen(
            ["liandong", "node", "--deployment", str(self.data_dir / "deployment.json")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(self.healthy, 30, "the node to answer /healthz")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            assert self.process is None or self.process.poll() is None, self.log()
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log(self) -> str:
        return (self.data_dir / "node.log").read_text(errors="replace")[-5000:]

    def add_product(self, sku: str, keys: list[str]) -> int:
        with Session(self.engine) as session:
            product = Product(sku=sku, name=sku)
            session.add(product)
            session.commit()
            assert product.id is not None
            session.add(ProductPrice(product_id=product.id, token=NATIVE_COIN, amount=str(PRICE)))
            session.commit()
            if keys:
                import_keys(session, self.vault, product.id, f"{sku}.txt", "\n".join(keys).encode(), "txt")
            return product.id

    def quote(self, product_id: int, quantity: int = 1) -> IssuedQuote:
        with Session(self.engine) as session:
            return create_quote(
                session,
                self.domain,
                "0x" + bytes(OPERATOR.key).hex(),
                product_id=product_id,
                quantity=quantity,
                token=NATIVE_COIN,
                now=int(self.w3.eth.get_block("latest")["timestamp"]),
            )

    def buyer(self, index: int) -> DevBuyer:
        return DevBuyer(self.w3, self.record.escrow, dev_account(index), self.record.chain_id)

    def order(self, chain_order_id: str) -> ShopOrder:
        with Session(self.engine) as session:
            order = session.exec(select(ShopOrder).where(ShopOrder.chain_order_id == chain_order_id)).one()
            session.expunge(order)
            return order

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}\n--- node log ---\n{self.log()}")


@pytest.fixture
def shop_factory(tmp_path: Path) -> Iterator[Callable[..., Shop]]:
    shops: list[Shop] = []

    def make(confirmations: int = 0, anvil_args: list[str] | None = None) -> Shop:
        anvil = Anvil(extra_args=anvil_args or []).start()
        data_dir = tmp_path / f"shop{len(shops)}"
        data_dir.mkdir()
        record = deploy_local_escrow(anvil.http_url, data_dir / "deployment.json")
        shop = Shop(anvil, record, data_dir, confirmations)
        shops.append(shop)
        return shop

    yield make
    for shop in shops:
        shop.kill()
        shop.anvil.stop()
