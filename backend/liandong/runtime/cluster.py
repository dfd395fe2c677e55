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
- **Fencing.** A leader that froze (SIGSTOP, a VM paused, a long GC) or lost the network must not
  come back and send. Its lock session runs with `idle_session_timeout` (the lease), TCP
  keepalives and a statement timeout, so the server ends a session that stops talking and releases
  the lock; the lock check asks `pg_locks` and the epoch, not a bare `SELECT 1`. Each new leader
  increments `leader_epoch.epoch` (under the lock) before it starts anything, and the settlement
  sender calls `fence(session)` in each transaction it writes in, just before the commit, which
  reads the epoch `FOR SHARE` and raises unless it is still this node's.

  Why that is enough: the new leader's increment needs the row exclusively, so it waits for every
  fenced transaction in progress; a fenced transaction that commits did so before the increment
  (and the new leader, which reads the store only after it, sees its rows), one that comes later
  reads the new epoch and rolls back. The sender writes a transaction to `ChainTx` (with its signed
  bytes) and commits before it broadcasts, so whatever a stale leader may still broadcast is a
  transaction the new leader knows, with its nonce, and re-broadcasts itself; nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from liandong.events import KeyRecipient, OrderEventHub
from liandong.store.db import KEEPALIVES

log = logging.getLogger(__name__)

LEADER_LOCK = 0x4C69616E646F6E67
"""The advisory lock key of the leader ("Liandong" in ASCII)."""
EVENTS_CHANNEL = "liandong_events"
WORK_CHANNEL = "liandong_work"
CONFIRMED = "confirmed"
DELIVERED = "delivered"
SETTLE = "settle"
"""A `liandong_work` payload: a follower took settlements (a refund from its API) for the leader."""
LOCK_CLASSID, LOCK_OBJID = LEADER_LOCK >> 32, LEADER_LOCK & 0xFFFFFFFF
"""How `pg_locks` shows the bigint advisory key (objsubid 1)."""


class NotLeaderError(Exception):
    """This node no longer leads (another node's epoch is newer, or it stepped down): the write that
    asked is rolled back, nothing is sent."""


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

    def recipients(self, chain_order_id: str) -> tuple[KeyRecipient, ...]:
        """None: the delivering node's events reach the pages through every node's NOTIFY, and
        the page on another node would never get a box sealed here; each page fetches its keys."""
        return ()

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

    def __init__(
        self,
        hub: ClusterHub,
        on_work: Callable[[str], None],
        retry: float = 1.0,
        lease: float = 10.0,
        holder: str = "",
    ) -> None:
        self.hub = hub
        self.on_work = on_work
        """Hears `liandong_work` payloads: "confirmed" (orders to deliver), "delivered" and "settle"
        (settlements to record)."""
        self.retry = retry
        self.lease = max(lease, 3 * retry)
        """Seconds the server lets the lock session stay silent before ending it (and the lock)."""
        self.holder = holder
        self.leading = False
        self.epoch: int | None = None
        """The leader epoch this node took; None while it does not lead."""

    def fence(self, session: Session) -> None:
        """Raises `NotLeaderError` unless this node still holds the newest leader epoch. Called in the
        sender's write transactions just before their commit: the row stays share-locked until that
        commit, so a new leader's increment waits for it (see the module's notes)."""
        epoch = self.epoch
        if not self.leading or epoch is None:
            raise NotLeaderError("this node does not lead")
        row = (
            session.connection()
            .execute(text("SELECT epoch FROM leader_epoch WHERE id = 1 FOR SHARE"))
            .first()
        )
        if row is None or int(row[0]) != epoch:
            self.leading = False
            log.error("fenced: leader epoch is %s, this node's is %s; stepping down", row and row[0], epoch)
            raise NotLeaderError(f"leader epoch {row and row[0]} is newer than this node's {epoch}")

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
                async with await self._lock_connection() as conn:
                    while not await self._try_lock(conn):
                        await asyncio.sleep(self.retry)
                    self.epoch = await self._next_epoch(conn)
                    log.info("this node leads (epoch %s): indexer and settlement sender start", self.epoch)
                    await self._lead_while_locked(conn, run_leader)
            except (psycopg.Error, OSError) as error:
                log.warning("leadership connection failed (%s); bidding again", error)
            except LeadershipLostError as error:
                log.warning("%s; stepping down", error)
            except Exception:  # the leader's work failed: let go of the lock, another node may lead
                log.exception("the leader's work failed; bidding again")
            self.leading = False
            self.epoch = None
            await asyncio.sleep(self.retry)

    async def _lock_connection(self) -> psycopg.AsyncConnection[Any]:
        """The session that holds the lock: keepalives both ways, and timeouts that make the server
        end it (releasing the lock) when this node stops talking for `lease` seconds."""
        lease_ms = int(self.lease * 1000)
        conn = await psycopg.AsyncConnection.connect(
            make_conninfo(
                self.hub.conninfo,
                connect_timeout=max(2, int(self.lease)),
                tcp_user_timeout=lease_ms,
                **KEEPALIVES,
            ),
            autocommit=True,
        )
        for setting, value in (
            ("idle_session_timeout", lease_ms),
            ("statement_timeout", lease_ms),
            ("idle_in_transaction_session_timeout", lease_ms),
            ("tcp_keepalives_idle", max(1, int(self.lease / 3))),
            ("tcp_keepalives_interval", 1),
            ("tcp_keepalives_count", 3),
            ("tcp_user_timeout", lease_ms),
        ):
            await conn.execute(f"SET {setting} = {int(value)}")
        return conn

    async def _next_epoch(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Increments the leader epoch, waiting for the fenced transactions of the previous leader."""
        row = await (
            await conn.execute(
                "INSERT INTO leader_epoch (id, epoch, holder, updated_at) VALUES (1, 1, %s, now())"
                " ON CONFLICT (id) DO UPDATE SET epoch = leader_epoch.epoch + 1,"
                " holder = EXCLUDED.holder, updated_at = EXCLUDED.updated_at RETURNING epoch",
                (self.holder[:200],),
            )
        ).fetchone()
        assert row is not None
        return int(row[0])

    async def _still_leading(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Raises unless this session still holds the lock and the epoch is still ours."""
        row = await (
            await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s"
                " AND objsubid = 1), (SELECT epoch FROM leader_epoch WHERE id = 1)",
                (LOCK_CLASSID, LOCK_OBJID),
            )
        ).fetchone()
        if row is None or not row[0]:
            raise LeadershipLostError("the leader lock is no longer held by this node's session")
        if row[1] != self.epoch:
            raise LeadershipLostError(f"leader epoch {row[1]} is not this node's {self.epoch}")

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
            while not work.done() and self.leading:  # the fence may have found a newer epoch
                await asyncio.wait({work}, timeout=self.retry)
                await self._still_leading(conn)  # raises once the lock's session or epoch is gone
        finally:
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
        if not self.leading:
            raise LeadershipLostError("fenced out by a newer leader epoch")
        work.result()  # a leader task that failed on its own is an error of this node


class LeadershipLostError(Exception):
    """The lock's session ended or a newer epoch exists: stop the leader's work, bid again."""
