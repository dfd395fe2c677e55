"""The composition root: `assemble` builds one shop node's parts from the settings and the
deployment record and wires them to each other; `Node.run` runs them until cancelled.

One place wires them because the parts call each other back: the indexer hands confirmed orders
to the delivery engine, which reads the chain's clock from the indexer and hands settlements to
the sender (or, on a node that does not lead, to the leader through the cluster); the API reloads
the engine's channels and asks the node for its health. Only this module knows every part, so
`liandong up`, `liandong node` and the tests' in-process shop are built the same way: by
`assemble`, a test giving by keyword what it prepared itself (a migrated database) and not
calling `run` (it drives the API and the delivery engine by hand).

`Node` is a dataclass of the parts, so that a caller can reach each one; the callbacks the parts
are given (`settle`, `on_work`, `on_confirmed`, `chain_time`, the API's `channels_changed` and
`health`) are its methods. The parts are built before the node that holds them, so `assemble`
hands them the methods through the node it builds last; the API's `ShopContext` and app come from
the finished node (`__post_init__`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlmodel import Session

from liandong.api.app import create_app, server_limits
from liandong.api.deps import ShopContext
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.indexer import ConfirmationPolicy, ConfirmedOrder, Indexer, IndexerStore
from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import Settlement, SettlementSender
from liandong.core.config import Settings
from liandong.core.errors import InvalidError
from liandong.delivery.engine import DeliveryEngine
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.events import OrderEventHub
from liandong.runtime.cluster import CONFIRMED, SETTLE, Cluster, ClusterHub
from liandong.runtime.operator import OperatorWatch, starting_key
from liandong.services.alerts import AlertNotifier
from liandong.store.db import open_shop_database
from liandong.store.models import ChainCheckpoint
from liandong.vault.crypto import load_keyring
from liandong.vault.rotation import ACKNOWLEDGE_SECONDS
from liandong.vault.service import Vault

log = logging.getLogger(__name__)

REORG_WINDOW = 64
"""Blocks kept for reorg detection; deeper reorganisations are treated as final history."""


@dataclass
class Node:
    """One shop node's parts, wired by `assemble`; `run` runs them until cancelled, and everything
    they do is resumed from the database by the next run."""

    settings: Settings
    record: DeploymentRecord
    operator_key: str
    engine: Engine
    vault: Vault
    hub: OrderEventHub
    """A `ClusterHub` when nodes share a PostgreSQL database."""
    templates: TemplateBook
    channels: ChannelRouter
    cluster: Cluster | None
    """None on SQLite: this node alone, always the leader."""
    sender: SettlementSender
    delivery: DeliveryEngine
    indexer: Indexer
    node_id: str
    """host:pid:port, as the cluster's leader and the vault's acknowledgements name this node."""
    operator_watch: OperatorWatch
    context: ShopContext = field(init=False)
    app: FastAPI = field(init=False)

    def __post_init__(self) -> None:
        self.context = ShopContext(
            settings=self.settings,
            engine=self.engine,
            vault=self.vault,
            hub=self.hub,
            domain=EscrowDomain(self.record.chain_id, self.record.escrow),
            operator_key=self.operator_key,
            settle=self.settle,
            resend=self.delivery.notify,
            channels=self.channels,
            templates=self.templates,
            on_channels_changed=self.channels_changed,
            health=self.health,
        )
        self.app = create_app(self.context)

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """The leader's sender takes them; another node tells the leader at once to look them up
        (its deliveries, and refunds asked for through its API: its own sender does not run)."""
        if self.cluster is None or self.cluster.leading:
            self.sender.submit(settlements)
        elif settlements:
            self.cluster.announce(SETTLE)

    def use_operator_key(self, operator_key: str) -> None:
        """The escrow names a new operator (see `runtime/operator.py`): quotes and settlements are
        signed by its key from now on."""
        self.operator_key = operator_key
        self.context.operator_key = operator_key
        self.sender.use_key(operator_key)

    def chain_time(self) -> float:
        """Unix time as the escrow judges deadlines: never behind the newest block's timestamp."""
        return max(time.time(), self.indexer.head_time)

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
            checkpoint = session.get(ChainCheckpoint, self.record.chain_id)
        return {
            "status": "ok",
            "leader": self.cluster is None or self.cluster.leading,
            "head_source": self.indexer.mode,
            "checkpoint": checkpoint.block_number if checkpoint else None,
            "operator": self.operator_watch.address,
            "queue": self.delivery.queue.qsize(),
        }

    def acknowledge_master_key(self) -> None:
        """Rereads the master keys and says which one this node uses (a rotation waits for it)."""
        self.vault.acknowledge(self.engine, self.node_id)

    async def lead(self) -> None:
        """What only one node runs: the chain's reader and the operator key's transactions."""
        self.sender.recover()
        self.delivery.recover()
        async with asyncio.TaskGroup() as leader_tasks:
            leader_tasks.create_task(self.indexer.run())
            leader_tasks.create_task(self.sender.run())
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
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.delivery.run())
            tasks.create_task(server.serve())
            tasks.create_task(_every(ACKNOWLEDGE_SECONDS, self.acknowledge_master_key))
            tasks.create_task(self.operator_watch.run())
            if self.cluster is None:
                tasks.create_task(self.lead())
            else:
                tasks.create_task(self.cluster.listen())
                tasks.create_task(self.cluster.lead(self.lead))


def assemble(settings: Settings, record: DeploymentRecord, *, engine: Engine | None = None) -> Node:
    """The node of `settings` for the escrow of `record`. `engine`: the settings' database, which
    the caller migrated (a test's copy of one migrated once); by default it is migrated here."""
    if settings.rpc_url is None:
        raise InvalidError("a node needs LIANDONG_RPC_URL")
    rpc_urls = list(dict.fromkeys([settings.rpc_url, *settings.rpc_urls]))
    database_url = settings.resolved_database_url
    if engine is None:
        engine = open_shop_database(settings)
    operator_key = starting_key(engine, settings, record)
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
    sender = SettlementSender(
        engine,
        rpc_urls,
        record.chain_id,
        record.escrow,
        operator_key,
        batch_interval=settings.settlement_batch_interval,
        batch_size=settings.settlement_batch_size,
        stuck_seconds=settings.stuck_transaction_seconds,
        fence=cluster.fence if cluster is not None else None,
    )
    delivery = DeliveryEngine(
        engine,
        vault,
        ordered_channels,
        lambda settlements: node.settle(settlements),
        hub=hub,
        public_url=settings.resolved_public_url,
        shared=shared,
        safety_margin=settings.delivery_safety_margin_seconds,
        clock=lambda: node.chain_time(),
    )
    policy = ConfirmationPolicy(
        settings.confirmations,
        settings.large_order_confirmations,
        {token.lower(): amount for token, amount in settings.large_order_thresholds.items()},
    )
    indexer = Indexer(
        IndexerStore(engine, record.chain_id, policy, REORG_WINDOW, hub.publish),
        rpc_urls,
        settings.resolved_ws_url,
        record.escrow,
        record.block_number,
        lambda confirmed: node.on_confirmed(confirmed),
    )
    node = Node(
        settings=settings,
        record=record,
        operator_key=operator_key,
        engine=engine,
        vault=vault,
        hub=hub,
        templates=templates,
        channels=channels,
        cluster=cluster,
        sender=sender,
        delivery=delivery,
        indexer=indexer,
        node_id=node_id,
        operator_watch=OperatorWatch(
            engine, settings, record, operator_key, lambda key: node.use_operator_key(key)
        ),
    )
    return node


async def _every(seconds: float, action: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            action()
        except Exception:  # the database may be away for a moment: try again next time
            log.exception("periodic %s failed", getattr(action, "__name__", action))
