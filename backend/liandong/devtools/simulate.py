"""Buyers on a dev chain: quote an order (in the shop's store, or through its API) and pay it from a
funded dev account.

Used by the tests, the benchmarks and `liandong simulate`; nothing here is meant for a real chain.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from eth_abi.abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from web3 import Web3

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.quotes import NATIVE_COIN, EscrowDomain, Quote
from liandong.core.config import Settings
from liandong.devtools.devnet import DEV_MNEMONIC, Anvil, free_port
from liandong.services.orders import DELIVERY_WINDOW_SECONDS, IssuedQuote, create_quote
from liandong.store.db import open_shop_database
from liandong.store.models import OrderStatus, Product, ProductPrice, ShopOrder, as_utc, utcnow
from liandong.vault.crypto import load_keyring
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault

PAY = keccak(text="pay((bytes32,uint256,uint256,address,uint256,address,uint64,uint64),bytes)")[:4]


@functools.cache
def dev_account(index: int) -> LocalAccount:
    """Account `index` of anvil's dev mnemonic (derived when first asked for, not at import)."""
    Account.enable_unaudited_hdwallet_features()
    account: LocalAccount = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return account


def dev_operator() -> LocalAccount:
    """The operator of a local shop: dev account 0, which also deploys the escrow."""
    return dev_account(0)


def pay_calldata(quote: Quote, signature: bytes) -> bytes:
    return PAY + encode(
        ["(bytes32,uint256,uint256,address,uint256,address,uint64,uint64)", "bytes"],
        [quote.as_abi_tuple(), signature],
    )


@dataclass
class DevBuyer:
    """A dev account that pays native-coin quotes, keeping its own nonce so payments can pipeline."""

    w3: Web3
    escrow: str
    account: LocalAccount
    chain_id: int
    nonce: int | None = field(default=None)

    def pay(self, quote: Quote, signature: bytes) -> str:
        """Sends the payment and returns its transaction hash, without waiting for the receipt."""
        if self.nonce is None:
            self.nonce = self.w3.eth.get_transaction_count(self.account.address, "pending")
        fee = 2 * int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0)) + 10**9
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": self.nonce,
                "to": Web3.to_checksum_address(self.escrow),
                "value": quote.amount,
                "data": pay_calldata(quote, signature),
                "gas": 200_000,
                "maxFeePerGas": fee,
                "maxPriorityFeePerGas": 10**9,
            }
        )
        self.nonce += 1
        return self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()


PRICE = 10**15
SIMULATED_BUYERS = tuple(range(1, 9))
"""The dev accounts `liandong simulate` pays from: not #0, which deploys and operates (its nonces
are the settlement sender's), nor #9, the demo wallet `liandong up` offers for a browser."""
POLL_SECONDS = 0.1
SETTLED_STATES = (OrderStatus.DELIVERED, OrderStatus.REFUNDING, OrderStatus.REFUNDED)


class SimulationError(Exception):
    """The shop refused a quote: sold out, rate-limited, not for sale."""


@dataclass(frozen=True)
class PlacedOrder:
    order: str
    """The escrow's order id."""
    paid_at: datetime
    """When the buyer sent the payment (UTC)."""


@dataclass(frozen=True)
class SimulationOutcome:
    latencies: list[float]
    """Seconds from sending the payment to the keys being handed out, per delivered order."""
    refunded: int
    """Orders the shop could not deliver (out of stock) and refunds."""
    waiting: int
    """Orders neither delivered nor refunded when the wait ended."""


def place_orders(
    api: httpx.Client,
    buyers: Sequence[DevBuyer],
    product_ids: Sequence[int],
    count: int,
    rate: float,
    on_paid: Callable[[], None],
) -> list[PlacedOrder]:
    """Quotes `count` orders through the shop's API (`POST /api/quotes`) and pays them in the
    native coin from `buyers` in turn, `rate` a second: each at its own time on a fixed schedule,
    so a slow answer delays the next payment without lowering the rate after it."""
    start = time.monotonic()
    placed = []
    for n in range(count):
        time.sleep(max(0.0, start + n / rate - time.monotonic()))
        buyer = buyers[n % len(buyers)]
        request = {"product_id": product_ids[n % len(product_ids)], "token": NATIVE_COIN}
        answer = api.post("/api/quotes", json=request | {"buyer": buyer.account.address})
        if answer.status_code != 201:
            limited = (
                " (quotes are limited per client: LIANDONG_QUOTE_RATE_LIMIT)"
                if answer.status_code == 429
                else ""
            )
            raise SimulationError(
                f"order {n + 1}: the shop answered {answer.status_code}: {answer.text}{limited}"
            )
        issued = answer.json()
        paid_at = utcnow()
        buyer.pay(Quote.from_json(issued["quote"]), bytes.fromhex(issued["signature"].removeprefix("0x")))
        placed.append(PlacedOrder(issued["order"], paid_at))
        on_paid()
    return placed


def await_outcomes(
    engine: Engine, placed: Sequence[PlacedOrder], timeout: float, on_settled: Callable[[int], None]
) -> SimulationOutcome:
    """Watches the shop's store until every order is delivered or refunded, or `timeout` passes."""
    pending = {order.order: order.paid_at for order in placed}
    latencies: list[float] = []
    refunded = 0
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        settled = _settled(engine, list(pending))
        for order, status, delivered_at in settled:
            paid_at = pending.pop(order)
            if status == OrderStatus.DELIVERED and delivered_at is not None:
                latencies.append((as_utc(delivered_at) - paid_at).total_seconds())
            else:
                refunded += 1
        on_settled(len(settled))
        if pending:
            time.sleep(POLL_SECONDS)
    return SimulationOutcome(latencies, refunded, len(pending))


@dataclass
class NodeProcess:
    """One `liandong node` child process with its own API port and log."""

    env: dict[str, str]
    deployment: Path
    log_path: Path
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["liandong", "node", "--deployment", str(self.deployment)],
                env={**self.env, "LIANDONG_API_PORT": str(self.api_port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def health(self) -> dict[str, Any] | None:
        """The node's /healthz, or None while it does not answer (raises once it has exited)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/healthz", timeout=1) as answer:
                found: dict[str, Any] = json.load(answer)
                return found
        except (urllib.error.URLError, ConnectionError, TimeoutError) as unreachable:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the node exited:\n{self.log()}") from unreachable
            return None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""


@dataclass
class LocalChain:
    """One more dev chain of a `LocalShop`: its anvil and the escrow deployed on it."""

    anvil: Anvil
    record: DeploymentRecord
    record_path: Path

    @functools.cached_property
    def w3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.anvil.http_url))

    @property
    def domain(self) -> EscrowDomain:
        return EscrowDomain(self.record.chain_id, self.record.escrow)


@dataclass
class LocalShop:
    """A shop on dev chains driven from outside: its nodes run as child processes, its store is
    opened directly. The tests, the benchmarks and `liandong simulate` use it. `anvil` and
    `record` are the shop's first chain; `more_chains` the others one node serves with it."""

    anvil: Anvil
    record: DeploymentRecord
    data_dir: Path
    confirmations: int = 0
    stuck_seconds: float = 30.0
    extra_env: dict[str, str] = field(default_factory=dict)
    """More LIANDONG_* settings for the node (channels, …)."""
    database_url: str | None = None
    """PostgreSQL for several nodes; unset: SQLite in `data_dir`."""
    more_chains: list[LocalChain] = field(default_factory=list)
    api_port: int = field(default_factory=free_port)
    engine: Engine = field(init=False)
    nodes: list[NodeProcess] = field(init=False)

    def __post_init__(self) -> None:
        self.engine = open_shop_database(self.settings())
        self.w3 = Web3(Web3.HTTPProvider(self.anvil.http_url))
        self.vault = Vault(load_keyring(self.settings()))
        self.domain = EscrowDomain(self.record.chain_id, self.record.escrow)
        self.nodes = [self._node_process(self.data_dir / "node.log", self.api_port)]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LIANDONG_DATA_DIR": str(self.data_dir),
            "LIANDONG_RPC_URL": self.anvil.http_url,
            "LIANDONG_OPERATOR_KEY": "0x" + bytes(dev_operator().key).hex(),
            "LIANDONG_CONFIRMATIONS": str(self.confirmations),
            "LIANDONG_SETTLEMENT_BATCH_INTERVAL": "0.1",
            "LIANDONG_STUCK_TRANSACTION_SECONDS": str(self.stuck_seconds),
            **({"LIANDONG_DATABASE_URL": self.database_url} if self.database_url else {}),
            **({"LIANDONG_CHAINS": json.dumps(self._chain_settings())} if self.more_chains else {}),
            **self.extra_env,
        }

    def _chain_settings(self) -> list[dict[str, str]]:
        return [
            {
                "name": str(chain.record.chain_id),
                "rpc_url": chain.anvil.http_url,
                "deployment": str(chain.record_path),
            }
            for chain in self.more_chains
        ]

    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=self.database_url)

    def chain(self, chain_id: int | None = None) -> LocalChain:
        """The shop's chain `chain_id` (default: its first)."""
        first = LocalChain(self.anvil, self.record, self.data_dir / "deployment.json")
        for chain in [first, *self.more_chains]:
            if chain_id is None or chain.record.chain_id == chain_id:
                return chain
        raise KeyError(f"the shop has no chain {chain_id}")

    def _node_process(self, log_path: Path, api_port: int) -> NodeProcess:
        return NodeProcess(self.env(), self.data_dir / "deployment.json", log_path, api_port)

    def add_node(self) -> NodeProcess:
        """One more node of this shop (sharing its PostgreSQL database), not yet started."""
        node = self._node_process(self.data_dir / f"node{len(self.nodes)}.log", free_port())
        self.nodes.append(node)
        return node

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.nodes[0].process

    def start(self, node: NodeProcess | None = None) -> None:
        started = node or self.nodes[0]
        started.start()
        self.wait_for(lambda: started.health() is not None, 30, "the node to answer /healthz")

    def healthy(self) -> bool:
        return self.nodes[0].health() is not None

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def log(self) -> str:
        return "\n".join(f"--- {node.log_path.name} ---\n{node.log()}" for node in self.nodes)

    def add_product(self, sku: str, keys: list[str]) -> int:
        with Session(self.engine) as session:
            product = Product(sku=sku, name=sku)
            session.add(product)
            session.commit()
            assert product.id is not None
            for chain_id in [self.record.chain_id, *(chain.record.chain_id for chain in self.more_chains)]:
                price = ProductPrice(
                    product_id=product.id, chain_id=chain_id, token=NATIVE_COIN, amount=str(PRICE)
                )
                session.add(price)
            session.commit()
            if keys:
                import_keys(session, self.vault, product.id, f"{sku}.txt", "\n".join(keys).encode(), "txt")
            return product.id

    def quote(
        self,
        product_id: int,
        quantity: int = 1,
        *,
        buyer: str | None = None,
        delivery_window: int = DELIVERY_WINDOW_SECONDS,
        chain_id: int | None = None,
    ) -> IssuedQuote:
        """An order quoted in the store at the chain's time: for `buyer`, or open (anyone pays);
        on chain `chain_id` (default: the shop's first)."""
        chain = self.chain(chain_id)
        with Session(self.engine) as session:
            return create_quote(
                session,
                chain.domain,
                "0x" + bytes(dev_operator().key).hex(),
                product_id=product_id,
                quantity=quantity,
                token=NATIVE_COIN,
                buyer=buyer,
                now=int(chain.w3.eth.get_block("latest")["timestamp"]),
                delivery_window=delivery_window,
                open_quote=buyer is None,
            )

    def buyer(self, index: int, chain_id: int | None = None) -> DevBuyer:
        """Dev account `index` paying on chain `chain_id` (default: the shop's first)."""
        chain = self.chain(chain_id)
        return DevBuyer(chain.w3, chain.record.escrow, dev_account(index), chain.record.chain_id)

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
        raise TimeoutError(f"timed out waiting for {what}\n--- node log ---\n{self.log()}")


def _settled(engine: Engine, orders: list[str]) -> list[tuple[str, OrderStatus, datetime | None]]:
    """Which of `orders` are delivered or refunded, in queries of at most 500 ids."""
    found: list[tuple[str, OrderStatus, datetime | None]] = []
    with Session(engine) as session:
        for start in range(0, len(orders), 500):
            found += session.exec(
                select(ShopOrder.chain_order_id, col(ShopOrder.status), ShopOrder.delivered_at).where(
                    col(ShopOrder.chain_order_id).in_(orders[start : start + 500]),
                    col(ShopOrder.status).in_(SETTLED_STATES),
                )
            ).all()
    return found
