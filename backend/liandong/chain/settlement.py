"""Records deliveries and refunds on-chain in batches, with its own nonces and fee bumps.

Settlements queue in memory (and are rebuilt from the database after a restart). Every
`batch_interval`, or as soon as `batch_size` wait, the sender sends one `recordDeliveries` and one
`refundBatch` transaction from the operator key. Each transaction sent is written to `ChainTx`
first, so a restart knows what may already be in flight. A transaction still unmined after
`stuck_seconds` is sent again with the same nonce and a higher fee.

The escrow rejects a whole batch if one order in it is already settled (a previous run's
transaction landed), so before sending, the batch is checked with `eth_estimateGas`; on a revert,
each order's on-chain status is read and the settled ones are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_account import Account
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from liandong.chain.escrow import (
    OrderTerms,
    decode_order_status,
    order_status_calldata,
    record_deliveries_calldata,
    refund_batch_calldata,
    rpc_int,
)
from liandong.store.models import ChainTx, ChainTxStatus, OrderStatus, ShopOrder, utcnow

log = logging.getLogger(__name__)

PAID_ON_CHAIN = 1
FEE_BUMP_PERCENT = 25  # nodes take a replacement at +10 % or more


@dataclass(frozen=True)
class Settlement:
    """What the chain must be told about an order: a delivery (with its commitment) or a refund."""

    order_id: int
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
    )


def settlement_of(order: ShopOrder) -> Settlement:
    """A delivered order's record, or the refund of one that cannot be delivered."""
    assert order.id is not None
    commitment = None
    if order.status == OrderStatus.DELIVERED:
        assert order.commitment is not None
        commitment = bytes.fromhex(order.commitment.removeprefix("0x"))
    return Settlement(order.id, order_terms(order), commitment)


class SettlementSender:
    def __init__(
        self,
        engine: Engine,
        rpc_url: str,
        chain_id: int,
        escrow: str,
        operator_key: str,
        *,
        batch_interval: float = 0.25,
        batch_size: int = 50,
        stuck_seconds: float = 30.0,
    ) -> None:
        self.engine = engine
        self.rpc = AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
        self.chain_id = chain_id
        self.escrow = AsyncWeb3.to_checksum_address(escrow)
        self.account = Account.from_key(operator_key)
        self.batch_interval = batch_interval
        self.batch_size = batch_size
        self.stuck_seconds = stuck_seconds
        self._deliveries: dict[int, Settlement] = {}
        self._refunds: dict[int, Settlement] = {}
        self._in_flight: set[int] = set()
        self._wake = asyncio.Event()

    def submit(self, settlements: Sequence[Settlement]) -> None:
        for settlement in settlements:
            if settlement.order_id in self._in_flight:
                continue
            queue = self._deliveries if settlement.commitment is not None else self._refunds
            queue[settlement.order_id] = settlement
        if len(self._deliveries) >= self.batch_size or len(self._refunds) >= self.batch_size:
            self._wake.set()

    def recover(self) -> None:
        """Marks the orders of transactions a previous run left pending as in flight."""
        with Session(self.engine) as session:
            for tx in session.exec(select(ChainTx).where(ChainTx.status == ChainTxStatus.PENDING)).all():
                self._in_flight.update(_order_ids(tx))

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.batch_interval)
            self._wake.clear()
            try:
                await self._track_in_flight()
                await self._flush(self._deliveries, "deliveries")
                await self._flush(self._refunds, "refunds")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("settlement round failed; retrying")

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
        """Sends `batch`, less the orders the escrow has settled already (they would revert it);
        returns the orders sent."""
        data = self._calldata(batch, kind)
        gas = await self._estimate(data)
        if gas is None:
            batch = await self._drop_settled(batch)
            if not batch:
                return set()
            data = self._calldata(batch, kind)
            gas = await self.rpc.eth.estimate_gas(self._tx_fields(data))
        await self._send(batch, kind, data, gas)
        return {settlement.order_id for settlement in batch}

    @staticmethod
    def _calldata(batch: Sequence[Settlement], kind: str) -> bytes:
        if kind == "deliveries":
            return record_deliveries_calldata([(s.terms, s.commitment or b"") for s in batch])
        return refund_batch_calldata([s.terms for s in batch])

    async def _estimate(self, data: bytes) -> int | None:
        """The gas of a settlement call, or None if it would revert."""
        try:
            return await self.rpc.eth.estimate_gas(self._tx_fields(data))
        except (ContractLogicError, Web3RPCError, ValueError):
            return None

    async def _drop_settled(self, batch: list[Settlement]) -> list[Settlement]:
        """Keeps the orders the escrow can still settle. The others are left for the indexer to
        record, with the block of their settlement, so that a reorganisation can undo it."""
        keep = []
        for settlement in batch:
            status = await self._on_chain_status(settlement.terms)
            if status == PAID_ON_CHAIN:
                keep.append(settlement)
            else:
                log.info("order %s is already settled on-chain (status %s)", settlement.order_id, status)
        return keep

    async def _on_chain_status(self, terms: OrderTerms) -> int:
        result = await self.rpc.eth.call({"to": self.escrow, "data": order_status_calldata(terms.order_id)})
        return decode_order_status(bytes(result))

    def _tx_fields(self, data: bytes) -> Any:
        return {"from": self.account.address, "to": self.escrow, "data": data}

    async def _send(self, batch: Sequence[Settlement], kind: str, data: bytes, gas: int) -> None:
        nonce = await self._free_nonce()
        max_fee, tip = await self._fees()
        tx_hash = await self._sign_and_send(data, nonce, gas * 6 // 5, max_fee, tip)
        with Session(self.engine) as session:
            session.add(
                ChainTx(
                    chain_id=self.chain_id,
                    sender=self.account.address,
                    nonce=nonce,
                    kind=kind,
                    tx_hash=tx_hash,
                    order_ids=",".join(str(s.order_id) for s in batch),
                    max_fee_per_gas=str(max_fee),
                )
            )
            session.commit()

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
                        ChainTx.status == ChainTxStatus.PENDING, ChainTx.sender == self.account.address
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

    async def _sign_and_send(self, data: bytes, nonce: int, gas: int, max_fee: int, tip: int) -> str:
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
        sent = await self.rpc.eth.send_raw_transaction(signed.raw_transaction)
        return sent.to_0x_hex()

    # ------------------------------------------------------------ tracking

    async def _track_in_flight(self) -> None:
        """Finishes mined transactions; re-sends the newest of a nonce when it is stuck."""
        with Session(self.engine) as session:
            pending = session.exec(
                select(ChainTx).where(ChainTx.status == ChainTxStatus.PENDING).order_by(col(ChainTx.id))
            ).all()
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
                if not await self._known(newest.tx_hash):
                    self._forget(attempts)
                elif age.total_seconds() > self.stuck_seconds:
                    await self._bump(newest)

    async def _known(self, tx_hash: str) -> bool:
        try:
            await self.rpc.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        return True

    def _forget(self, attempts: Sequence[ChainTx]) -> None:
        """The node no longer knows the transaction (restarted, or evicted it): send its orders again.

        Orders that did get settled meanwhile are dropped by `_drop_settled` before the next send.
        """
        log.warning("settlement tx %s vanished from the node; re-sending its orders", attempts[-1].tx_hash)
        with Session(self.engine) as session:
            for tx in attempts:
                stale = session.get(ChainTx, tx.id)
                if stale is not None:
                    stale.status, stale.updated_at = ChainTxStatus.FAILED, utcnow()
                    session.add(stale)
            orders = session.exec(
                select(ShopOrder).where(col(ShopOrder.id).in_(_order_ids(attempts[-1])))
            ).all()
            session.commit()
            settlements = [settlement_of(order) for order in orders if order.payer is not None]
        self._in_flight.difference_update(_order_ids(attempts[-1]))
        self.submit(settlements)

    async def _receipt(self, tx_hash: str) -> Any:
        try:
            return await self.rpc.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except Exception:  # not found yet (web3 raises), or the node is away
            return None

    def _finish(self, tx: ChainTx, receipt: Any) -> None:
        order_ids = _order_ids(tx)
        succeeded = int(receipt["status"]) == 1
        with Session(self.engine) as session:
            for sibling in session.exec(
                select(ChainTx).where(
                    ChainTx.sender == tx.sender,
                    ChainTx.nonce == tx.nonce,
                    ChainTx.status == ChainTxStatus.PENDING,
                )
            ).all():
                mined = sibling.tx_hash == tx.tx_hash
                sibling.status = (
                    (ChainTxStatus.MINED if succeeded else ChainTxStatus.FAILED)
                    if mined
                    else ChainTxStatus.REPLACED
                )
                sibling.updated_at = utcnow()
                session.add(sibling)
            if succeeded:
                self._mark_settled(session, order_ids, tx.kind, rpc_int(receipt["blockNumber"]))
            session.commit()
        self._in_flight.difference_update(order_ids)
        if not succeeded:
            log.error("settlement tx %s reverted; its orders go back in the queue", tx.tx_hash)
            with Session(self.engine) as session:
                orders = session.exec(select(ShopOrder).where(col(ShopOrder.id).in_(order_ids))).all()
                self.submit([settlement_of(order) for order in orders if order.payer is not None])

    @staticmethod
    def _mark_settled(session: Session, order_ids: Sequence[int], kind: str, block: int) -> None:
        """What the receipt proves, at once (the indexer confirms it from the log): with the block,
        so that a reorganisation below it undoes the record (see `IndexerStore._unsettle_after`)."""
        now = utcnow()
        for order in session.exec(select(ShopOrder).where(col(ShopOrder.id).in_(order_ids))).all():
            if kind == "deliveries" and order.committed_at is None:
                order.committed_at, order.settled_block = now, block
            elif kind == "refunds" and order.status != OrderStatus.REFUNDED:
                order.status, order.refunded_at, order.settled_block = OrderStatus.REFUNDED, now, block
            session.add(order)

    async def _bump(self, tx: ChainTx) -> None:
        """Re-sends a stuck transaction with the same nonce and a fee at least 25 % higher.

        Both stay pending: whichever is mined settles the orders, `_finish` marks the other replaced.
        """
        original = await self.rpc.eth.get_transaction(tx.tx_hash)  # type: ignore[arg-type]
        max_fee, tip = await self._fees()
        max_fee = max(max_fee, int(tx.max_fee_per_gas) * (100 + FEE_BUMP_PERCENT) // 100)
        tip = max(tip, int(original.get("maxPriorityFeePerGas", 0)) * (100 + FEE_BUMP_PERCENT) // 100)
        tx_hash = await self._sign_and_send(
            bytes(original["input"]), tx.nonce, int(original["gas"]), max_fee, tip
        )
        log.warning("settlement tx %s stuck; replaced by %s", tx.tx_hash, tx_hash)
        with Session(self.engine) as session:
            session.add(
                ChainTx(
                    chain_id=tx.chain_id,
                    sender=tx.sender,
                    nonce=tx.nonce,
                    kind=tx.kind,
                    tx_hash=tx_hash,
                    order_ids=tx.order_ids,
                    max_fee_per_gas=str(max_fee),
                )
            )
            session.commit()


def _order_ids(tx: ChainTx) -> list[int]:
    return [int(order_id) for order_id in tx.order_ids.split(",") if order_id]
