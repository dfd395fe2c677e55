"""One shop node: the indexer, the delivery engine, the settlement sender and the API, in one loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from sqlmodel import Session

from liandong.api.app import create_app
from liandong.api.deps import ShopContext
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.indexer import ConfirmationPolicy, Indexer, IndexerStore
from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import SettlementSender
from liandong.core.config import Settings
from liandong.delivery.channels import OrderEventHub
from liandong.delivery.engine import DeliveryEngine
from liandong.delivery.registry import ChannelRouter
from liandong.delivery.templates import TemplateBook
from liandong.store.db import make_engine, migrate
from liandong.store.models import ChainCheckpoint
from liandong.vault.crypto import load_keyring
from liandong.vault.service import Vault

log = logging.getLogger(__name__)

REORG_WINDOW = 64
"""Blocks kept for reorg detection; deeper reorganisations are treated as final history."""


async def run_node(settings: Settings, record: DeploymentRecord) -> None:
    """Runs until cancelled; everything it does is resumed from the database by the next run."""
    if settings.rpc_url is None or settings.operator_key is None:
        raise ValueError("a node needs LIANDONG_RPC_URL and LIANDONG_OPERATOR_KEY")
    database_url = settings.resolved_database_url
    migrate(database_url)
    engine = make_engine(database_url)
    vault = Vault(load_keyring(settings), lambda: load_keyring(settings))
    hub = OrderEventHub()
    templates = TemplateBook()
    channels = ChannelRouter(settings, hub, templates)
    with Session(engine) as session:
        templates.reload(session)
        ordered_channels = channels.ordered(session)
    sender = SettlementSender(
        engine,
        settings.rpc_url,
        record.chain_id,
        record.escrow,
        settings.operator_key,
        batch_interval=settings.settlement_batch_interval,
        batch_size=settings.settlement_batch_size,
        stuck_seconds=settings.stuck_transaction_seconds,
    )
    delivery = DeliveryEngine(
        engine, vault, ordered_channels, sender.submit, hub=hub, public_url=settings.resolved_public_url
    )

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
        delivery.enqueue,
    )
    sender.recover()
    delivery.recover()

    def health() -> dict[str, Any]:
        with Session(engine) as session:
            checkpoint = session.get(ChainCheckpoint, record.chain_id)
        return {
            "status": "ok",
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
            operator_key=settings.operator_key,
            settle=sender.submit,
            resend=delivery.notify,
            channels=channels,
            templates=templates,
            on_channels_changed=channels_changed,
            health=health,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.api_host, port=settings.api_port, log_level="warning", lifespan="off"
        )
    )
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(indexer.run())
        tasks.create_task(delivery.run())
        tasks.create_task(sender.run())
        tasks.create_task(server.serve())
