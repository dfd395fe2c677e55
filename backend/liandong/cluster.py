"""Several nodes on one PostgreSQL database: one leader, work shared by all, events everywhere.

- **Leader.** The indexer and the settlement sender must run once (one checkpoint, one nonce
  sequence for the operator key), so they run on the node that holds a session-level advisory
  lock. PostgreSQL drops the lock with the session: when the leader dies, its connection closes,
  and another node takes the lock within a `retry` interval and resumes from the checkpoint.
- **Work.** Every node's delivery workers claim confirmed orders and card keys with
  `FOR UPDATE SKIP LOCKED` (see `DeliveryEngine(shared=True)`); a NOTIFY on `liandong_work` wakes
  them when the leader confirms orders, and wakes the leader's sender when a node delivers.
- **Events.** Order and stock events go out as NOTIFY on `liandong_events` and every node's
  listener hands them to its own WebSocket subscribers, so a buyer's page and the dashboard hear
  them whichever node they are connected to. PostgreSQL is the only broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from liandong.delivery.channels import OrderEventHub

log = logging.getLogger(__name__)

LEADER_LOCK = 0x4C69616E646F6E67
"""The advisory lock key of the leader ("Liandong" in ASCII)."""
EVENTS_CHANNEL = "liandong_events"
WORK_CHANNEL = "liandong_work"
CONFIRMED = "confirmed"
DELIVERED = "delivered"


def conninfo(database_url: str) -> str:
    """A libpq connection string for the SQLAlchemy URL the rest of the shop uses."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class ClusterHub(OrderEventHub):
    """The event hub of a node in a cluster: events go through PostgreSQL to every node."""

    def __init__(self, database_url: str) -> None:
        super().__init__()
        self.conninfo = conninfo(database_url)
        self._connection: psycopg.Connection[Any] | None = None

    def deliver(self, order_topic: str | None, event: dict[str, Any]) -> None:
        self.notify(EVENTS_CHANNEL, json.dumps({"topic": order_topic, "event": event}))

    def notify(self, channel: str, payload: str) -> None:
        """Sends a NOTIFY; a lost event is logged, never raised: pages re-read the order's state."""
        for attempt in range(2):
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                self._connection.execute("SELECT pg_notify(%s, %s)", (channel, payload))
                return
            except psycopg.Error as error:
                self._connection = None
                if attempt:
                    log.warning("NOTIFY %s lost: %s", channel, error)

    def received(self, payload: str) -> None:
        message = json.loads(payload)
        super().deliver(message["topic"], message["event"])


class Cluster:
    """This node's part in the cluster: its listener, and its bid for leadership."""

    def __init__(self, hub: ClusterHub, on_work: Callable[[str], None], retry: float = 1.0) -> None:
        self.hub = hub
        self.on_work = on_work
        """Hears `liandong_work` payloads: "confirmed" (orders to deliver), "delivered" (to record)."""
        self.retry = retry
        self.leading = False

    def announce(self, work: str) -> None:
        self.hub.notify(WORK_CHANNEL, work)

    async def listen(self) -> None:
        """Relays the cluster's events and wake-ups to this node, reconnecting after failures."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.hub.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    self._dispatch(WORK_CHANNEL, CONFIRMED)  # what was announced while away
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except (psycopg.Error, OSError) as error:
                log.warning("cluster listener lost its connection (%s); reconnecting", error)
                await asyncio.sleep(self.retry)

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            if channel == EVENTS_CHANNEL:
                self.hub.received(payload)
            else:
                self.on_work(payload)
        except Exception:  # a failing handler (the database away for a moment) never stops the listener
            log.exception("handling a %s notification failed", channel)

    async def lead(self, run_leader: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Runs `run_leader` whenever this node holds the leader lock; cancels it when the lock's
        session is lost (the database restarted, the network failed), then bids again."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.hub.conninfo, autocommit=True) as conn:
                    while not await self._try_lock(conn):
                        await asyncio.sleep(self.retry)
                    log.info("this node leads: indexer and settlement sender start")
                    await self._lead_while_locked(conn, run_leader)
            except (psycopg.Error, OSError) as error:
                log.warning("leadership connection failed (%s); bidding again", error)
            except Exception:  # the leader's work failed: let go of the lock, another node may lead
                log.exception("the leader's work failed; bidding again")
            self.leading = False
            await asyncio.sleep(self.retry)

    @staticmethod
    async def _try_lock(conn: psycopg.AsyncConnection[Any]) -> bool:
        row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))).fetchone()
        return bool(row and row[0])

    async def _lead_while_locked(
        self, conn: psycopg.AsyncConnection[Any], run_leader: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        self.leading = True
        work = asyncio.create_task(run_leader())
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self.retry)
                await conn.execute("SELECT 1")  # raises once the session holding the lock is gone
        finally:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        work.result()  # a leader task that failed on its own is an error of this node
