"""Records deliveries and refunds on-chain in batches, with its own nonces and fee bumps.

Settlements queue in memory (and are rebuilt from the database after a restart). Every
`batch_interval`, or as soon as `batch_size` wait, the sender sends one `recordDeliveries` and one
`refundBatch` transaction from the operator key; it looks up its pending transactions' receipts
once per `receipt_interval` (the chain's block time: no receipt comes sooner).

Crash safety: a transaction is signed, then written to `ChainTx` WITH its signed raw bytes and
committed, and only then sent. A crash before the commit sent nothing; a crash after it leaves a
pending row whose transaction the chain node may never have seen: after a restart (or whenever the
node no longer knows a pending transaction) the stored bytes are broadcast again, the same
transaction with the same nonce and hash, never signed anew. Only when that nonce has been used by
something else are its orders sent again in a new transaction. A transaction still unmined after
`stuck_seconds` is replaced with the same nonce and a fee 25 % higher (written before it is sent,
the same way).

The escrow's batches skip an order they cannot settle (`SettlementSkipped`) rather than revert, so
a mined batch does not mean every order in it settled: only the orders whose `OrderDelivered` /
`OrderRefunded` log is in the receipt are marked settled. A skipped one is left to the indexer when
another transaction settled it (reason 3), is refunded when its delivery window closed (reason 4),
and is held for the merchant with its reason in the abnormal log otherwise. A batch whose gas
estimate reverts is split in halves until the order that makes it revert is isolated: that order is
held with the error in the abnormal log, the others are sent.

When the escrow's operator changes (a key rotation), `use_key` switches the signing key; pending
transactions of the old key are given up and their orders sent again with the new one.

Every transaction in which the sender writes (its `ChainTx` rows, settlement marks, anomalies)
calls `fence(session)` just before its commit, which raises if this node no longer leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from liandong.chain.escrow import (
    SKIP_NOT_PAID,
    SKIP_REASONS,
    SKIP_WINDOW_CLOSED,
    OrderDelivered,
    OrderRefunded,
    OrderTerms,
    decode_log,
    decode_order_status,
    decode_skipped,
    order_status_calldata,
    record_deliveries_calldata,
    refund_batch_calldata,
    rpc_int,
)
from liandong.chain.indexer.providers import PoolProvider, ProviderPool
from liandong.core.crashpoints import crash_point
from liandong.store.models import ChainTx, ChainTxStatus, OperatorStatus, OrderStatus, ShopOrder, utcnow

log = logging.getLogger(__name__)

PAID_ON_CHAIN = 1
FEE_BUMP_PERCENT = 25  # nodes take a replacement at +10 % or more
SETTLED_ELSEWHERE_SECONDS = 10.0
"""An order a batch skipped because another transaction settled it is not sent again for this long:
the indexer records that settlement from its log meanwhile. Short, because a reorganisation can
take that other transaction off the chain, and the order is then owed again: sending it once more
too early only costs a skipped entry in a batch."""
DELIVERY_WINDOW_CLOSED = "delivery window closed"
OPERATOR_STATUS_SECONDS = 10.0
"""How often the operator's balance is written down for the dashboard's alerts."""
DEFAULT_BATCH_GAS = 700_000
"""A full batch's gas (50 deliveries ~575k, 50 refunds ~770k) until a real one has been estimated."""


@dataclass(frozen=True)
class Settlement:
    """What the chain must be told about an order: a delivery (with its commitment) or a refund."""

    order_id: int
    chain_id: int
    """The chain of the order's escrow: its sender takes it."""
    terms: OrderTerms
    commitment: bytes | None


def order_terms(order: ShopOrder) -> OrderTerms:
    """The escrow's `Order` struct for a paid order."""
    assert order.payer is not None
    return OrderTerms(
        order_id=bytes.fromhex(order.chain_order_id.removeprefix("0x")),
        buyer=order.payer,
        token=order.token,
        amount=int(order.amount),
        delivery_deadline=order.delivery_deadline,
        fee_bps=order.fee_bps,
    )


def settlement_of(order: ShopOrder) -> Settlement:
    """A delivered order's record, or the refund of one that cannot be delivered."""
    assert order.id is not None
    commitment = None
    if order.status == OrderStatus.DELIVERED:
        assert order.commitment is not None
        commitment = bytes.fromhex(order.commitment.removeprefix("0x"))
    return Settlement(order.id, order.chain_id, order_terms(order), commitment)


def hold_order(session: Session, order_id: int, anomaly: str) -> None:
    """Stops handing `order_id` to the sender (the escrow refuses its settlement) and says why in
    the abnormal log; an anomaly already recorded is kept."""
    session.connection().execute(
        update(ShopOrder)
        .where(col(ShopOrder.id) == order_id)
        .values(settlement_held=True, anomaly=func.coalesce(col(ShopOrder.anomaly), anomaly[:200]))
    )


class SettlementSender:
    def __init__(
        self,
        engine: Engine,
        rpc_urls: list[str],
        chain_id: int,
        escrow: str,
        operator_key: str,
        *,
        batch_interval: float = 0.25,
        batch_size: int = 50,
        stuck_seconds: float = 30.0,
        receipt_interval: float | None = None,
        fence: Callable[[Session], None] | None = None,
    ) -> None:
        self.engine = engine
        self.pool = ProviderPool(rpc_urls)
        self.rpc = AsyncWeb3(PoolProvider(self.pool))
        """Every request through the pool: a dead or throttling URL fails over to the next one."""
        self.chain_id = chain_id
        self.escrow = AsyncWeb3.to_checksum_address(escrow)
        self.account = Account.from_key(operator_key)
        self.batch_interval = batch_interval
        self.batch_size = batch_size
        self.stuck_seconds = stuck_seconds
        self.receipt_interval = batch_interval if receipt_interval is None else receipt_interval
        """How often pending transactions are looked up (a receipt and a fee bump each): a receipt
        can only appear with a new block, so the chain's block time; every round when unknown. A
        block's deliveries wake the sender several times, and each lookup is two RPC calls per
        pending transaction, done on the event loop that also answers the buyers."""
        self._track_due = 0.0
        self.fence = fence
        """Called in every transaction the sender writes in, just before its commit; raises when
        this node no longer leads (set by the cluster)."""
        self._deliveries: dict[int, Settlement] = {}
        self._refunds: dict[int, Settlement] = {}
        self._in_flight: set[int] = set()
        self._resting: dict[int, float] = {}
        """Orders settled by another transaction, by when they may be sent again (monotonic)."""
        self._batch_gas = 0
        self._status_due = 0.0
        self._wake = asyncio.Event()

    def submit(self, settlements: Sequence[Settlement]) -> None:
        now = time.monotonic()
        for settlement in settlements:
            if settlement.order_id in self._in_flight:
                continue
            if self._resting.get(settlement.order_id, 0.0) > now:
                continue
            self._resting.pop(settlement.order_id, None)
            queue = self._deliveries if settlement.commitment is not None else self._refunds
            queue[settlement.order_id] = settlement
        if len(self._deliveries) >= self.batch_size or len(self._refunds) >= self.batch_size:
            self._wake.set()

    def recover(self) -> None:
        """Starts a term from the database alone. What the last term held in memory goes: it may
        have been cancelled mid-batch (this node lost the lead while sending), and an order left
        marked in flight with no transaction behind it would never be sent. The orders of pending
        transactions are in flight; the first round broadcasts again those the chain node does not
        know (see the module's doc). The caller resubmits what is still owed."""
        self._deliveries.clear()
        self._refunds.clear()
        self._resting.clear()
        self._in_flight.clear()
        with Session(self.engine) as session:
            for tx in session.exec(self._pending()).all():
                self._in_flight.update(_order_ids(tx))

    def _pending(self) -> SelectOfScalar[ChainTx]:
        """This chain's pending transactions (each chain's sender has its own nonces)."""
        return select(ChainTx).where(
            ChainTx.chain_id == self.chain_id, ChainTx.status == ChainTxStatus.PENDING
        )

    def use_key(self, operator_key: str) -> None:
        """Signs with `operator_key` from now on: the escrow names a new operator. Pending
        transactions of the previous key are given up at the next round and their orders sent again
        by this one (an old transaction mined meanwhile settled them, and the escrow skips them)."""
        self.account = Account.from_key(operator_key)
        self._wake.set()

    def _commit(self, session: Session) -> None:
        if self.fence is not None:
            self.fence(session)
        session.commit()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.batch_interval)
            self._wake.clear()
            try:
                if time.monotonic() >= self._track_due:
                    self._track_due = time.monotonic() + self.receipt_interval
                    await self._track_in_flight()
                await self._flush(self._deliveries, "deliveries")
                await self._flush(self._refunds, "refunds")
                if time.monotonic() >= self._status_due:
                    self._status_due = time.monotonic() + OPERATOR_STATUS_SECONDS
                    await self._record_operator_status()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("settlement round failed; retrying")

    async def _record_operator_status(self) -> None:
        """The operator's balance and what a batch costs now, for the low-balance alert."""
        balance = int(await self.rpc.eth.get_balance(self.account.address))
        max_fee, _ = await self._fees()
        with Session(self.engine) as session:
            session.merge(
                OperatorStatus(
                    chain_id=self.chain_id,
                    address=self.account.address,
                    balance=str(balance),
                    max_fee_per_gas=str(max_fee),
                    batch_gas=self._batch_gas or DEFAULT_BATCH_GAS,
                    updated_at=utcnow(),
                )
            )
            self._commit(session)

    # ------------------------------------------------------------- sending

    async def _flush(self, queue: dict[int, Settlement], kind: str) -> None:
        while queue:
            batch = sorted(list(queue.values())[: self.batch_size], key=lambda s: s.terms.token)
            taken = {settlement.order_id for settlement in batch}
            for order_id in taken:
                del queue[order_id]
            # In flight from now on, not only once sent: the node's rescan submits every unsettled
            # order, and one taken back into the queue while this batch is being sent goes out twice.
            self._in_flight.update(taken)
            try:
                sent = await self._settle(batch, kind)
            except Exception:
                self._in_flight.difference_update(taken)
                for settlement in batch:  # back in line for the next round, not lost until a restart
                    queue.setdefault(settlement.order_id, settlement)
                raise
            self._in_flight.difference_update(taken - sent)

    async def _settle(self, batch: list[Settlement], kind: str) -> set[int]:
        """Sends `batch`; if its gas estimate reverts, splits it in halves until the order that makes
        it revert is isolated, holds that one (abnormal log) and sends the rest. Returns the orders
        sent."""
        data = self._calldata(batch, kind)
        gas, error = await self._estimate(data)
        if gas is not None:
            self._batch_gas = max(self._batch_gas, gas * self.batch_size // len(batch))
            await self._send(batch, kind, data, gas)
            return {settlement.order_id for settlement in batch}
        if len(batch) > 1:
            middle = len(batch) // 2
            return await self._settle(batch[:middle], kind) | await self._settle(batch[middle:], kind)
        settlement = batch[0]
        status = await self._on_chain_status(settlement.terms)
        if status != PAID_ON_CHAIN:
            # Settled by another transaction: the indexer records it, with its block.
            log.info("order %s is already settled on-chain (status %s)", settlement.order_id, status)
            self._resting[settlement.order_id] = time.monotonic() + SETTLED_ELSEWHERE_SECONDS
            return set()
        if (await self._estimate(self._calldata([], kind)))[0] is None:
            # Even an empty batch reverts: not this order's fault (operator revoked or replaced).
            raise RuntimeError(f"every {kind} call reverts ({error}): is this key still the operator?")
        log.error("ALERT: the %s of order %s reverts (%s): held", kind, settlement.order_id, error)
        with Session(self.engine) as session:
            hold_order(session, settlement.order_id, f"settlement reverts: {error}")
            self._commit(session)
        return set()

    @staticmethod
    def _calldata(batch: Sequence[Settlement], kind: str) -> bytes:
        if kind == "deliveries":
            return record_deliveries_calldata([(s.terms, s.commitment or b"") for s in batch])
        return refund_batch_calldata([s.terms for s in batch])

    async def _estimate(self, data: bytes) -> tuple[int | None, str]:
        """The gas of a settlement call, or None (and why) if it would revert."""
        try:
            return await self.rpc.eth.estimate_gas(self._tx_fields(data)), ""
        except (ContractLogicError, Web3RPCError, ValueError) as error:
            return None, str(error)[:150]

    async def _on_chain_status(self, terms: OrderTerms) -> int:
        result = await self.rpc.eth.call({"to": self.escrow, "data": order_status_calldata(terms.order_id)})
        return decode_order_status(bytes(result))

    def _tx_fields(self, data: bytes) -> Any:
        return {"from": self.account.address, "to": self.escrow, "data": data}

    async def _send(self, batch: Sequence[Settlement], kind: str, data: bytes, gas: int) -> None:
        nonce = await self._free_nonce()
        max_fee, tip = await self._fees()
        await self._sign_store_send(
            data, nonce, gas * 6 // 5, max_fee, tip, kind, ",".join(str(s.order_id) for s in batch)
        )

    async def _free_nonce(self) -> int:
        """The lowest nonce from the chain's count on that no pending transaction of ours holds.

        Asked afresh for every transaction, not counted up: a reorganisation can take one of our
        mined transactions off the chain, and its nonce must be filled first or every transaction
        queued behind it waits for ever.
        """
        free = int(await self.rpc.eth.get_transaction_count(self.account.address, "latest"))
        with Session(self.engine) as session:
            taken = set(
                session.exec(
                    select(ChainTx.nonce).where(
                        ChainTx.chain_id == self.chain_id,
                        ChainTx.status == ChainTxStatus.PENDING,
                        ChainTx.sender == self.account.address,
                    )
                )
            )
        while free in taken:
            free += 1
        return free

    async def _fees(self) -> tuple[int, int]:
        latest = await self.rpc.eth.get_block("latest")
        base_fee = int(latest.get("baseFeePerGas", 0))
        tip = await self.rpc.eth.max_priority_fee
        return 2 * base_fee + tip, tip

    async def _sign_store_send(
        self, data: bytes, nonce: int, gas: int, max_fee: int, tip: int, kind: str, order_ids: str
    ) -> str:
        """Signs, writes the signed transaction to `ChainTx` and commits, then sends it. A failed
        send is not an error here: the row is pending, and `_track_in_flight` broadcasts it again."""
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": nonce,
                "to": self.escrow,
                "data": data,
                "value": 0,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": min(tip, max_fee),
            }
        )
        raw = bytes(signed.raw_transaction)
        tx_hash = "0x" + bytes(signed.hash).hex()
        with Session(self.engine) as session:
            session.add(
                ChainTx(
                    chain_id=self.chain_id,
                    sender=self.account.address,
                    nonce=nonce,
                    kind=kind,
                    tx_hash=tx_hash,
                    order_ids=order_ids,
                    max_fee_per_gas=str(max_fee),
                    raw_tx="0x" + raw.hex(),
                )
            )
            self._commit(session)
        crash_point("settlement-signed")
        try:
            await self.rpc.eth.send_raw_transaction(raw)
        except Exception as error:  # stored: broadcast again by the next rounds
            log.warning("sending settlement tx %s failed (%s); it will be broadcast again", tx_hash, error)
        return tx_hash

    # ------------------------------------------------------------ tracking

    async def _track_in_flight(self) -> None:
        """Finishes mined transactions; broadcasts again those the node lost; replaces stuck ones."""
        with Session(self.engine) as session:
            pending = session.exec(self._pending().order_by(col(ChainTx.id))).all()
        by_nonce: dict[int, list[ChainTx]] = defaultdict(list)
        for tx in pending:
            by_nonce[tx.nonce].append(tx)
        for attempts in by_nonce.values():
            for tx in attempts:
                receipt = await self._receipt(tx.tx_hash)
                if receipt is not None:
                    self._finish(tx, receipt)
                    break
            else:
                newest = attempts[-1]
                age = datetime.now(UTC) - newest.created_at.replace(tzinfo=UTC)
                if newest.sender != self.account.address:  # the key before a rotation: not ours to bump
                    self._forget(attempts)
                elif not await self._known(newest.tx_hash):
                    await self._rebroadcast(attempts)
                elif age.total_seconds() > self.stuck_seconds:
                    await self._bump(newest)

    async def _rebroadcast(self, attempts: Sequence[ChainTx]) -> None:
        """The node does not know our newest transaction of a nonce (a crash before it was sent, a
        restarted or evicting node): the stored bytes go out again. If the nonce is used up by
        another transaction, the orders are sent again in a new one."""
        newest = attempts[-1]
        if newest.raw_tx is not None:
            try:
                await self.rpc.eth.send_raw_transaction(bytes.fromhex(newest.raw_tx.removeprefix("0x")))
            except Exception as error:
                used = int(await self.rpc.eth.get_transaction_count(self.account.address, "latest"))
                if newest.nonce >= used:  # still ours to fill: try again next round
                    log.warning("broadcasting settlement tx %s again failed: %s", newest.tx_hash, error)
                    return
            else:
                log.warning("settlement tx %s was unknown to the node: broadcast again", newest.tx_hash)
                return
        self._forget(attempts)

    async def _known(self, tx_hash: str) -> bool:
        try:
            await self.rpc.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def _forget(self, attempts: Sequence[ChainTx]) -> None:
        """The transaction cannot be mined any more (its nonce went to another): send its orders
        again. Orders that did get settled meanwhile are skipped by the escrow (and the indexer
        records their settlement)."""
        log.warning("settlement tx %s cannot be mined; re-sending its orders", attempts[-1].tx_hash)
        with Session(self.engine) as session:
            session.connection().execute(
                update(ChainTx)
                .where(
                    col(ChainTx.id).in_([tx.id for tx in attempts]),
                    col(ChainTx.status) == ChainTxStatus.PENDING,
                )
                .values(status=ChainTxStatus.FAILED, updated_at=utcnow())
            )
            orders = session.exec(
                select(ShopOrder).where(col(ShopOrder.id).in_(_order_ids(attempts[-1])))
            ).all()
            settlements = _still_owed(orders)
            self._commit(session)
        self._in_flight.difference_update(_order_ids(attempts[-1]))
        self.submit(settlements)

    async def _receipt(self, tx_hash: str) -> Any:
        try:
            return await self.rpc.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except Exception:  # not found yet (web3 raises), or the node is away
            return None

    def _outcomes(self, receipt: Any) -> tuple[set[str], dict[str, int]]:
        """The orders a mined batch settled, and those it skipped with their reason (0x-hex ids)."""
        settled: set[str] = set()
        skipped: dict[str, int] = {}
        for entry in receipt["logs"]:
            if str(entry["address"]).lower() != self.escrow.lower():
                continue
            event = decode_log(entry)
            if isinstance(event, OrderDelivered | OrderRefunded):
                settled.add("0x" + event.order_id.hex())
            elif (skip := decode_skipped(entry)) is not None:
                skipped["0x" + skip.order_id.hex()] = skip.reason
        return settled, skipped

    def _finish(self, tx: ChainTx, receipt: Any) -> None:
        order_ids = _order_ids(tx)
        succeeded = int(receipt["status"]) == 1
        refunds_due: list[Settlement] = []
        with Session(self.engine) as session:
            pending_sibling = (
                col(ChainTx.chain_id) == tx.chain_id,
                col(ChainTx.sender) == tx.sender,
                col(ChainTx.nonce) == tx.nonce,
                col(ChainTx.status) == ChainTxStatus.PENDING,
            )
            connection = session.connection()
            connection.execute(
                update(ChainTx)
                .where(*pending_sibling, col(ChainTx.tx_hash) == tx.tx_hash)
                .values(
                    status=ChainTxStatus.MINED if succeeded else ChainTxStatus.FAILED, updated_at=utcnow()
                )
            )
            connection.execute(
                update(ChainTx)
                .where(*pending_sibling)
                .values(status=ChainTxStatus.REPLACED, updated_at=utcnow())
            )
            if succeeded:
                refunds_due = self._apply_receipt(session, order_ids, tx.kind, receipt)
            self._commit(session)
        self._in_flight.difference_update(order_ids)
        self.submit(refunds_due)
        if not succeeded:
            log.error("settlement tx %s reverted; its orders go back in the queue", tx.tx_hash)
            with Session(self.engine) as session:
                orders = session.exec(select(ShopOrder).where(col(ShopOrder.id).in_(order_ids))).all()
                self.submit(_still_owed(orders))

    def _apply_receipt(
        self, session: Session, order_ids: Sequence[int], kind: str, receipt: Any
    ) -> list[Settlement]:
        """Marks settled what the receipt's logs prove; deals with the orders the batch skipped.
        Returns the refunds now due (deliveries whose window closed)."""
        settled_keys, skipped = self._outcomes(receipt)
        keys = dict(
            session.exec(
                select(ShopOrder.id, ShopOrder.chain_order_id).where(col(ShopOrder.id).in_(order_ids))
            ).all()
        )
        settled = [order_id for order_id, key in keys.items() if key in settled_keys and order_id]
        self._mark_settled(session, settled, kind, rpc_int(receipt["blockNumber"]))
        refunds: list[int] = []
        for order_id, key in keys.items():
            reason = skipped.get(key)
            if reason is None or order_id is None:
                continue
            why = SKIP_REASONS.get(reason, f"reason {reason}")
            if reason == SKIP_NOT_PAID:  # another transaction settled it: the indexer records that
                self._resting[order_id] = time.monotonic() + SETTLED_ELSEWHERE_SECONDS
            elif reason == SKIP_WINDOW_CLOSED:
                log.error(
                    "ALERT: order %s: delivery window closed before it was recorded; refunding", order_id
                )
                moved = session.connection().execute(
                    update(ShopOrder)
                    .where(col(ShopOrder.id) == order_id, col(ShopOrder.status) == OrderStatus.DELIVERED)
                    .values(
                        status=OrderStatus.REFUNDING,
                        refund_reason=DELIVERY_WINDOW_CLOSED,
                        anomaly=func.coalesce(col(ShopOrder.anomaly), DELIVERY_WINDOW_CLOSED),
                    )
                )
                if moved.rowcount:
                    refunds.append(order_id)
            else:
                log.error("ALERT: the escrow skipped the %s of order %s: %s", kind, order_id, why)
                hold_order(session, order_id, f"settlement skipped: {why}")
        session.flush()
        owed = session.exec(select(ShopOrder).where(col(ShopOrder.id).in_(refunds))).all() if refunds else []
        return _still_owed(owed)

    @staticmethod
    def _mark_settled(session: Session, order_ids: Sequence[int], kind: str, block: int) -> None:
        """What the receipt proves, at once (the indexer confirms it from the log): with the block,
        so that a reorganisation below it undoes the record (see `IndexerStore._unsettle_after`).
        Conditional updates: a state another writer reached meanwhile is never overwritten."""
        if not order_ids:
            return
        now = utcnow()
        connection = session.connection()
        if kind == "deliveries":
            connection.execute(
                update(ShopOrder)
                .where(col(ShopOrder.id).in_(order_ids), col(ShopOrder.committed_at).is_(None))
                .values(committed_at=now, settled_block=block)
            )
        else:
            connection.execute(
                update(ShopOrder)
                .where(col(ShopOrder.id).in_(order_ids), col(ShopOrder.status) != OrderStatus.REFUNDED)
                .values(status=OrderStatus.REFUNDED, refunded_at=now, settled_block=block)
            )

    async def _bump(self, tx: ChainTx) -> None:
        """Re-sends a stuck transaction with the same nonce and a fee at least 25 % higher.

        Both stay pending: whichever is mined settles the orders, `_finish` marks the other replaced.
        """
        original = await self.rpc.eth.get_transaction(tx.tx_hash)  # type: ignore[arg-type]
        max_fee, tip = await self._fees()
        max_fee = max(max_fee, int(tx.max_fee_per_gas) * (100 + FEE_BUMP_PERCENT) // 100)
        tip = max(tip, int(original.get("maxPriorityFeePerGas", 0)) * (100 + FEE_BUMP_PERCENT) // 100)
        tx_hash = await self._sign_store_send(
            bytes(original["input"]), tx.nonce, int(original["gas"]), max_fee, tip, tx.kind, tx.order_ids
        )
        log.warning("settlement tx %s stuck; replaced by %s", tx.tx_hash, tx_hash)


def _still_owed(orders: Sequence[ShopOrder]) -> list[Settlement]:
    """The settlements of `orders` that are still owed to the chain (not held, paid)."""
    return [
        settlement_of(order)
        for order in orders
        if order.payer is not None
        and not order.settlement_held
        and (
            order.status == OrderStatus.REFUNDING
            or (order.status == OrderStatus.DELIVERED and order.committed_at is None)
        )
    ]


def _order_ids(tx: ChainTx) -> list[int]:
    return [int(order_id) for order_id in tx.order_ids.split(",") if order_id]
