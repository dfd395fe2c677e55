"""One shop node: the indexer, the delivery engine, the settlement sender and the API, in one loop."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from sqlalchemy.engine import make_url
from sqlmodel import Session

from liandong.api.app import create_app, server_limits
from liandong.api.deps import ShopContext
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.indexer import ConfirmationPolicy, ConfirmedOrder, Indexer, IndexerStore
from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import Settlement, SettlementSender
from liandong.core.config import Settings
from liandong.delivery.engine import DeliveryEngine
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.events import OrderEventHub
from liandong.runtime.cluster import CONFIRMED, SETTLE, Cluster, ClusterHub
from liandong.services.alerts import AlertNotifier
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainCheckpoint
from liandong.vault.crypto import load_keyring
from liandong.vault.rotation import ACKNOWLEDGE_SECONDS
from liandong.vault.service import Vault

log = logging.getLogger(__name__)

REORG_WINDOW = 64
"""Blocks kept for reorg detection; deeper reorganisations are treated as final history."""


async def run_node(settings: Settings, record: DeploymentRecord) -> None:
    """Runs until cancelled; everything it does is resumed from the database by the next run."""
    if settings.rpc_url is None or settings.operator_key is None:
        raise ValueError("a node needs LIANDONG_RPC_URL and LIANDONG_OPERATOR_KEY")
    operator_key = settings.operator_key.get_secret_value()
    database_url = settings.resolved_database_url
    migrate(database_url)
    engine = make_engine(database_url)
    vault = Vault(load_keyring(settings), lambda: load_keyring(settings))
    shared = make_url(database_url).get_backend_name() == "postgresql"
    hub = ClusterHub(database_url) if shared else OrderEventHub()
    templates = TemplateBook()
    channels = ChannelRouter(settings, hub, templates)
    with Session(engine) as session:
        templates.reload(session)
        ordered_channels = channels.ordered(session)
    cluster = (
        Cluster(
            hub,
            lambda work: on_work(work),
            lease=settings.leader_lease_seconds,
            holder=f"{socket.gethostname()}:{os.getpid()}:{settings.api_port}",  # for operators
        )
        if isinstance(hub, ClusterHub)
        else None
    )
    sender = SettlementSender(
        engine,
        settings.rpc_url,
        record.chain_id,
        record.escrow,
        operator_key,
        batch_interval=settings.settlement_batch_interval,
        batch_size=settings.settlement_batch_size,
        stuck_seconds=settings.stuck_transaction_seconds,
        fence=cluster.fence if cluster is not None else None,
    )

    def settle(settlements: Sequence[Settlement]) -> None:
        """The leader's sender takes them; another node tells the leader at once to look them up
        (its deliveries, and refunds asked for through its API: its own sender does not run)."""
        if cluster is None or cluster.leading:
            sender.submit(settlements)
        elif settlements:
            cluster.announce(SETTLE)

    delivery = DeliveryEngine(
        engine,
        vault,
        ordered_channels,
        settle,
        hub=hub,
        public_url=settings.resolved_public_url,
        shared=shared,
        safety_margin=settings.delivery_safety_margin_seconds,
        clock=lambda: max(time.time(), indexer.head_time),
    )

    def on_work(work: str) -> None:
        if work == CONFIRMED:
            delivery.wake()
        elif cluster is not None and cluster.leading:
            delivery.resubmit_unsettled()

    def on_confirmed(confirmed: list[ConfirmedOrder]) -> None:
        delivery.enqueue(confirmed)
        if cluster is not None:
            cluster.announce(CONFIRMED)

    def channels_changed() -> None:
        with Session(engine) as session:
            templates.reload(session)
            delivery.channels = channels.ordered(session)

    policy = ConfirmationPolicy(
        settings.confirmations,
        settings.large_order_confirmations,
        {token.lower(): amount for token, amount in settings.large_order_thresholds.items()},
    )
    indexer = Indexer(
        IndexerStore(engine, record.chain_id, policy, REORG_WINDOW, hub.publish),
        settings.rpc_url,
        settings.resolved_ws_url,
        record.escrow,
        record.block_number,
        on_confirmed,
    )

    async def lead() -> None:
        """What only one node runs: the chain's reader and the operator key's transactions."""
        sender.recover()
        delivery.recover()
        async with asyncio.TaskGroup() as leader_tasks:
            leader_tasks.create_task(indexer.run())
            leader_tasks.create_task(sender.run())
            leader_tasks.create_task(_every(settings.settlement_rescan_seconds, delivery.rescan))
            leader_tasks.create_task(AlertNotifier(engine, settings).run())

    def health() -> dict[str, Any]:
        with Session(engine) as session:
            checkpoint = session.get(ChainCheckpoint, record.chain_id)
        return {
            "status": "ok",
            "leader": cluster is None or cluster.leading,
            "head_source": indexer.mode,
            "checkpoint": checkpoint.block_number if checkpoint else None,
            "queue": delivery.queue.qsize(),
        }

    app = create_app(
        ShopContext(
            settings=settings,
            engine=engine,
            vault=vault,
            hub=hub,
            domain=EscrowDomain(record.chain_id, record.escrow),
            operator_key=operator_key,
            settle=settle,
            resend=delivery.notify,
            channels=channels,
            templates=templates,
            on_channels_changed=channels_changed,
            health=health,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            lifespan="off",
            **server_limits(settings),
        )
    )
    node_id = f"{socket.gethostname()}:{os.getpid()}:{settings.api_port}"

    def acknowledge_master_key() -> None:
        """Rereads the master keys and says which one this node uses (a rotation waits for it)."""
        vault.acknowledge(engine, node_id)

    acknowledge_master_key()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(delivery.run())
        tasks.create_task(server.serve())
        tasks.create_task(_every(ACKNOWLEDGE_SECONDS, acknowledge_master_key))
        if cluster is None:
            tasks.create_task(lead())
        else:
            tasks.create_task(cluster.listen())
            tasks.create_task(cluster.lead(lead))


async def _every(seconds: float, action: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            action()
        except Exception:  # the database may be away for a moment: try again next time
            log.exception("periodic %s failed", getattr(action, "__name__", action))
