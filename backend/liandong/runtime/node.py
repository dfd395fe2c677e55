"""The composition root: `assemble` builds one shop node's parts from the settings and the
deployment record and wires them to each other; `Node.run` runs them until cancelled.

One place wires them because the parts call each other back: each chain's indexer hands confirmed
orders to the one delivery engine, which reads each chain's clock from its indexer and hands
settlements to the node, which gives each to its chain's sender (or, on a node that does not
lead, tells the leader through the cluster); the API reloads the engine's channels and asks the
node for its health. A node serves several chains at once (`runtime/chains.py` resolves them):
per chain a `ChainRuntime` with its own indexer, checkpoint, sender, nonces and operator key; the
store, the vault, the delivery engine and the API are shared, and every order names its chain.
Only this module knows every part, so `liandong up`, `liandong node` and the tests' in-process
shop are built the same way: by `assemble`, a test giving by keyword what it prepared itself (a
migrated database) and not calling `run` (it drives the API and the delivery engine by hand).

`Node` is a dataclass of the parts, so that a caller can reach each one; the callbacks the parts
are given (`settle`, `on_work`, `on_confirmed`, `chain_time`, the API's `channels_changed` and
`health`) are its methods. The parts are built before the node that holds them, so `assemble`
hands them the methods through the node it builds last; the API's `ShopContext` and app come from
the finished node (`__post_init__`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from liandong.api.app import create_app, server_limits
from liandong.api.deps import ChainAccess, ShopContext
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.indexer import ConfirmedOrder, Indexer, IndexerStore
from liandong.chain.policy import policy_for
from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import Settlement, SettlementSender
from liandong.core.config import Settings
from liandong.delivery.engine import DeliveryEngine
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.events import OrderEventHub
from liandong.runtime.chains import ChainSetup, adopt_unassigned, chain_setups, pricing_of
from liandong.runtime.cluster import CONFIRMED, SETTLE, Cluster, ClusterHub
from liandong.runtime.operator import OperatorWatch, starting_key
from liandong.services.alerts import AlertNotifier
from liandong.services.catalogue import Pricing
from liandong.store.db import open_shop_database
from liandong.store.models import ChainCheckpoint
from liandong.vault.crypto import load_keyring
from liandong.vault.rotation import ACKNOWLEDGE_SECONDS
from liandong.vault.service import Vault

log = logging.getLogger(__name__)

REORG_WINDOW = 64
"""Blocks kept for reorg detection; deeper reorganisations are treated as final history."""


@dataclass
class ChainRuntime:
    """What a node runs for one chain: its own indexer, settlement sender (own nonces) and watch
    of the escrow's operator, with the operator key it signs with now."""

    setup: ChainSetup
    sender: SettlementSender
    indexer: Indexer
    operator_watch: OperatorWatch
    operator_key: str

    @property
    def chain_id(self) -> int:
        return self.setup.chain_id


@dataclass
class Node:
    """One shop node's parts, wired by `assemble`; `run` runs them until cancelled, and everything
    they do is resumed from the database by the next run."""

    settings: Settings
    chains: dict[int, ChainRuntime]
    """By chain id, the shop's first chain first."""
    engine: Engine
    vault: Vault
    hub: OrderEventHub
    """A `ClusterHub` when nodes share a PostgreSQL database."""
    templates: TemplateBook
    channels: ChannelRouter
    cluster: Cluster | None
    """None on SQLite: this node alone, always the leader."""
    delivery: DeliveryEngine
    pricing: Pricing
    node_id: str
    """host:pid:port, as the cluster's leader and the vault's acknowledgements name this node."""
    context: ShopContext = field(init=False)
    app: FastAPI = field(init=False)
    _unserved: set[int] = field(init=False, default_factory=set)
    """Chains owed settlements this node does not serve, already logged."""

    def __post_init__(self) -> None:
        self.context = ShopContext(
            settings=self.settings,
            engine=self.engine,
            vault=self.vault,
            hub=self.hub,
            chains={
                chain_id: ChainAccess(
                    name=chain.setup.name,
                    domain=EscrowDomain(chain_id, chain.setup.record.escrow),
                    operator_key=chain.operator_key,
                    rpc_url=chain.setup.rpc_urls[0],
                )
                for chain_id, chain in self.chains.items()
            },
            pricing=self.pricing,
            settle=self.settle,
            resend=self.delivery.notify,
            channels=self.channels,
            templates=self.templates,
            on_channels_changed=self.channels_changed,
            health=self.health,
        )
        self.app = create_app(self.context)

    @property
    def first(self) -> ChainRuntime:
        """The shop's first chain (its deployment record's)."""
        return next(iter(self.chains.values()))

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """The leader's senders take them, each its chain's; another node tells the leader at once
        to look them up (its deliveries, and refunds asked for through its API: its own senders do
        not run)."""
        if self.cluster is None or self.cluster.leading:
            by_chain: dict[int, list[Settlement]] = {}
            for settlement in settlements:
                by_chain.setdefault(settlement.chain_id, []).append(settlement)
            for chain_id, owed in by_chain.items():
                chain = self.chains.get(chain_id)
                if chain is not None:
                    chain.sender.submit(owed)
                elif chain_id not in self._unserved:
                    self._unserved.add(chain_id)  # said once: the rescan hands them over every round
                    log.error(
                        "%d settlements are owed on chain %d, which this node does not serve",
                        len(owed),
                        chain_id,
                    )
        elif settlements:
            self.cluster.announce(SETTLE)

    def use_operator_key(self, chain_id: int, operator_key: str) -> None:
        """The escrow of `chain_id` names a new operator (see `runtime/operator.py`): that chain's
        quotes and settlements are signed by its key from now on."""
        chain = self.chains[chain_id]
        chain.operator_key = operator_key
        self.context.chains[chain_id].operator_key = operator_key
        chain.sender.use_key(operator_key)

    def chain_time(self, chain_id: int) -> float:
        """Unix time as the escrow of `chain_id` judges deadlines: never behind its newest block."""
        chain = self.chains.get(chain_id)
        head_time = chain.indexer.head_time if chain is not None else 0.0
        return max(time.time(), head_time)

    def on_work(self, work: str) -> None:
        """A `liandong_work` payload from the cluster."""
        if work == CONFIRMED:
            self.delivery.wake()
        elif self.cluster is not None and self.cluster.leading:
            self.delivery.resubmit_unsettled()

    def on_confirmed(self, confirmed: list[ConfirmedOrder]) -> None:
        self.delivery.enqueue(confirmed)
        if self.cluster is not None:
            self.cluster.announce(CONFIRMED)

    def channels_changed(self) -> None:
        """The merchant changed the channels or templates: the engine uses them from its next notice."""
        with Session(self.engine) as session:
            self.templates.reload(session)
            self.delivery.channels = self.channels.ordered(session)

    def health(self) -> dict[str, Any]:
        with Session(self.engine) as session:
            checkpoints = {
                checkpoint.chain_id: checkpoint.block_number
                for checkpoint in session.exec(select(ChainCheckpoint)).all()
            }
        chains = [
            {
                "chain_id": chain_id,
                "network": chain.setup.name,
                "head_source": chain.indexer.mode,
                "checkpoint": checkpoints.get(chain_id),
                "operator": chain.operator_watch.address,
                "providers": chain.indexer.rpc.health(),
            }
            for chain_id, chain in self.chains.items()
        ]
        first = chains[0]
        return {
            "status": "ok",
            "leader": self.cluster is None or self.cluster.leading,
            "head_source": first["head_source"],
            "checkpoint": first["checkpoint"],
            "operator": first["operator"],
            "chains": chains,
            "queue": self.delivery.queue.qsize(),
        }

    def acknowledge_master_key(self) -> None:
        """Rereads the master keys and says which one this node uses (a rotation waits for it)."""
        self.vault.acknowledge(self.engine, self.node_id)

    async def lead(self) -> None:
        """What only one node runs: each chain's reader and its operator key's transactions."""
        for chain in self.chains.values():
            chain.sender.recover()
        self.delivery.recover()
        async with asyncio.TaskGroup() as leader_tasks:
            for chain in self.chains.values():
                leader_tasks.create_task(chain.indexer.run())
                leader_tasks.create_task(chain.sender.run())
            leader_tasks.create_task(_every(self.settings.settlement_rescan_seconds, self.delivery.rescan))
            leader_tasks.create_task(AlertNotifier(self.engine, self.settings).run())

    async def run(self) -> None:
        """Serves the API and delivers; leads too when alone, or bids for the lead in a cluster."""
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=self.settings.api_host,
                port=self.settings.api_port,
                log_level="warning",
                lifespan="off",
                **server_limits(self.settings),
            )
        )
        self.acknowledge_master_key()
        # What the node is made of (modules, the contracts' ABIs, the ORM's mappers, the parts
        # built above) lives as long as the process: moved out of the garbage collector's reach,
        # a full collection walks only what the node makes while it runs. Without it, each full
        # collection took ~110 ms under load, a stall of every order delivered meanwhile.
        gc.freeze()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.delivery.run())
                tasks.create_task(server.serve())
                tasks.create_task(_every(ACKNOWLEDGE_SECONDS, self.acknowledge_master_key))
                for chain in self.chains.values():
                    tasks.create_task(chain.operator_watch.run())
                if self.cluster is None:
                    tasks.create_task(self.lead())
                else:
                    tasks.create_task(self.cluster.listen())
                    tasks.create_task(self.cluster.lead(self.lead))
        finally:  # stopped: the chains' HTTP sessions closed, not left for the garbage collector
            pools = [
                pool for chain in self.chains.values() for pool in (chain.indexer.rpc, chain.sender.pool)
            ]
            await asyncio.gather(*(pool.close() for pool in pools), return_exceptions=True)


def run_node(main: Coroutine[Any, Any, None]) -> None:
    """Runs `main` (a node's `run`, or what wraps it) to its end on uvloop: the node's work is
    sockets (HTTP, WebSockets, RPC) and timers, where libuv's loop spends a fraction of the
    standard loop's CPU on each event; uvicorn parses HTTP with httptools beside it."""
    uvloop.run(main)


def _chain_runtime(
    node: Callable[[], Node],
    engine: Engine,
    settings: Settings,
    setup: ChainSetup,
    hub: OrderEventHub,
    cluster: Cluster | None,
) -> ChainRuntime:
    """One chain's parts; their callbacks reach the node (`node()`) once they are called."""
    operator_key = starting_key(engine, settings, setup.record, setup.rpc_urls)
    sender = SettlementSender(
        engine,
        setup.rpc_urls,
        setup.chain_id,
        setup.record.escrow,
        operator_key,
        batch_interval=settings.settlement_batch_interval,
        batch_size=settings.settlement_batch_size,
        stuck_seconds=settings.stuck_transaction_seconds,
        receipt_interval=setup.block_time,
        fence=cluster.fence if cluster is not None else None,
    )
    policy = policy_for(settings, setup.chain_id, overrides=setup.confirmations)
    indexer = Indexer(
        IndexerStore(engine, setup.chain_id, policy, REORG_WINDOW, hub.publish),
        setup.rpc_urls,
        setup.ws_url,
        setup.record.escrow,
        setup.record.block_number,
        lambda confirmed: node().on_confirmed(confirmed),
        backfill_chunk=setup.logs_block_range,
        block_time=setup.block_time,  # HTTP head polls paced to the chain's blocks
    )
    watch = OperatorWatch(
        engine,
        settings,
        setup.record,
        setup.rpc_urls,
        operator_key,
        lambda key: node().use_operator_key(setup.chain_id, key),
    )
    return ChainRuntime(setup, sender, indexer, watch, operator_key)


def assemble(settings: Settings, record: DeploymentRecord, *, engine: Engine | None = None) -> Node:
    """The node of `settings` for the escrow of `record` (the shop's first chain) and those of
    `settings.chains`. `engine`: the settings' database, which the caller migrated (a test's copy
    of one migrated once); by default it is migrated here."""
    setups = chain_setups(settings, record)
    database_url = settings.resolved_database_url
    if engine is None:
        engine = open_shop_database(settings)
    adopt_unassigned(engine, setups[0].chain_id)
    vault = Vault(load_keyring(settings), lambda: load_keyring(settings))
    shared = make_url(database_url).get_backend_name() == "postgresql"
    hub = ClusterHub(database_url) if shared else OrderEventHub()
    templates = TemplateBook()
    channels = ChannelRouter(settings, hub, templates)
    with Session(engine) as session:
        templates.reload(session)
        ordered_channels = channels.ordered(session)
    node_id = f"{socket.gethostname()}:{os.getpid()}:{settings.api_port}"
    node: Node  # built last, from the parts below: their callbacks reach it once they are called
    cluster = (
        Cluster(
            hub,
            lambda work: node.on_work(work),
            lease=settings.leader_lease_seconds,
            holder=node_id,  # for operators
        )
        if isinstance(hub, ClusterHub)
        else None
    )
    chains = {
        setup.chain_id: _chain_runtime(lambda: node, engine, settings, setup, hub, cluster)
        for setup in setups
    }
    delivery = DeliveryEngine(
        engine,
        vault,
        ordered_channels,
        lambda settlements: node.settle(settlements),
        hub=hub,
        public_url=settings.resolved_public_url,
        shared=shared,
        safety_margin=settings.delivery_safety_margin_seconds,
        clock=lambda chain_id: node.chain_time(chain_id),
    )
    node = Node(
        settings=settings,
        chains=chains,
        engine=engine,
        vault=vault,
        hub=hub,
        templates=templates,
        channels=channels,
        cluster=cluster,
        delivery=delivery,
        pricing=pricing_of(setups),
        node_id=node_id,
    )
    return node


async def _every(seconds: float, action: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            action()
        except Exception:  # the database may be away for a moment: try again next time
            log.exception("periodic %s failed", getattr(action, "__name__", action))
