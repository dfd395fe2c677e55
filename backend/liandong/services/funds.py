"""The merchant's money at a glance: the dashboard's Funds panel, in one answer (`read_funds`).

This module owns that answer and nothing else: per token, what the escrow holds and owes
(escrowed, the merchant's balance, fees, refund credits), the operator key's gas balance against
the low-gas alert's setting, and the settlement lag. The books are read from the chain through the
audit (`audit.report.books_at_head`), so the panel and `liandong audit` cannot disagree; the gas
is read from the chain too; the settlement lag and where the escrow's history starts come from the
shop's store.

It never moves funds. Withdrawals and pauses are signed by the owner's own wallet in the browser
(`web/static/js/funds.js`), which builds the call from the escrow's ABI and reads the chain's
state itself: the server holds no owner key and cannot alter what is signed.
"""

from __future__ import annotations

from eth_account import Account
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from liandong.audit.report import JsonRpc, books_at_head
from liandong.chain.escrow import rpc_int
from liandong.chain.quotes import EscrowDomain
from liandong.chain.settlement import DEFAULT_BATCH_GAS
from liandong.core.config import Settings
from liandong.core.errors import UnavailableError
from liandong.services import stats
from liandong.store.models import ChainCheckpoint, OperatorStatus, OrderStatus, Payment, ShopOrder, as_utc

RPC_TIMEOUT = 10.0
"""Seconds the panel waits for the chain node on each request."""


class FundsUnavailableError(UnavailableError):
    """The shop has no chain endpoint, or the one it has serves another chain. (An endpoint that
    does not answer, or no escrow at the address, is the audit's `AuditError`, unavailable too.)"""


class TokenFunds(BaseModel):
    """One token's books at the head, in base units (decimal strings: uint256 overflows JSON
    numbers)."""

    token: str
    held: str
    """What the escrow holds of the token (native balance or `balanceOf`)."""
    escrowed: str
    """Paid orders neither delivered nor refunded yet."""
    merchant: str
    """`merchantBalance`: what `withdraw(token)` sends to the payout address."""
    fees: str
    """Platform fees accrued, over every fee recipient."""
    refund_credits: str
    """Refunds credited to buyers and not claimed yet."""
    owed: str
    """escrowed + merchant + fees + refund credits: what `held` must cover."""


class OperatorGas(BaseModel):
    address: str
    balance: str
    """Wei, read from the chain at the head."""
    needed: str
    """Wei that `alert_batches` full settlement batches cost at the fee the sender last saw (the
    chain's gas price before it saw any)."""
    alert_batches: int
    """The setting the operator balance alert uses (`operator_balance_alert_batches`)."""
    low: bool
    """The balance is under `needed`: top the operator key up before settlements stop."""


class SettlementLag(BaseModel):
    waiting: int
    """Deliveries whose commitment is not on-chain yet: the merchant is not paid for them."""
    oldest_seconds: float | None
    """How long the oldest of them has waited; None when none waits."""
    alert_seconds: float
    """The settlement lag alert's threshold (`settlement_lag_alert_seconds`)."""
    lagging: int
    """Deliveries waiting longer than that: the settlement lag alert's count."""


class Funds(BaseModel):
    chain_id: int
    escrow: str
    block: int
    """The head the chain was read at."""
    from_block: int
    """Where the escrow's events were read from (see `history_start`)."""
    tokens: list[TokenFunds]
    findings: list[str]
    """Where the escrow's state departs from its events (shortfall, surplus, a balance variable):
    `liandong audit` tells more. Empty when the books agree."""
    operator: OperatorGas
    settlement: SettlementLag


def history_start(session: Session, chain_id: int) -> int:
    """The first block the escrow's books need: the shop's first recorded payment (nothing the
    books count happens before a payment), else the block after the indexer's checkpoint (it saw
    no payment up to there), else the chain's first block."""
    first = session.exec(select(func.min(Payment.block_number)).where(Payment.chain_id == chain_id)).one()
    if first is not None:
        return int(first)
    checkpoint = session.get(ChainCheckpoint, chain_id)
    return checkpoint.block_number + 1 if checkpoint is not None else 0


def _settlement_lag(session: Session, settings: Settings, chain_id: int) -> SettlementLag:
    """The deliveries of `chain_id` not recorded on its escrow yet."""
    oldest = session.exec(
        select(func.min(ShopOrder.delivered_at)).where(
            ShopOrder.chain_id == chain_id,
            ShopOrder.status == OrderStatus.DELIVERED,
            col(ShopOrder.committed_at).is_(None),
        )
    ).one()
    found = stats.alerts(
        session,
        settlement_lag_seconds=settings.settlement_lag_alert_seconds,
        balance_batches=settings.operator_balance_alert_batches,
        chain_id=chain_id,
    )
    return SettlementLag(
        waiting=stats.backlog(session, chain_id).deliveries_to_record,
        oldest_seconds=None if oldest is None else (as_utc() - as_utc(oldest)).total_seconds(),
        alert_seconds=settings.settlement_lag_alert_seconds,
        lagging=sum(alert.count for alert in found if alert.kind == stats.AlertKind.SETTLEMENT_LAG),
    )


def read_funds(
    engine: Engine, settings: Settings, rpc_url: str, domain: EscrowDomain, operator_key: str
) -> Funds:
    """The Funds panel of one chain (its escrow `domain`, read through `rpc_url`): the store is
    read first (and let go), then the chain at its head. Raises an `UnavailableError`
    (`FundsUnavailableError`, `AuditError`) when the chain cannot be read."""
    operator = Account.from_key(operator_key).address
    with Session(engine) as session:
        from_block = history_start(session, domain.chain_id)
        lag = _settlement_lag(session, settings, domain.chain_id)
        status = session.get(OperatorStatus, (domain.chain_id, operator))
    with JsonRpc(rpc_url, RPC_TIMEOUT) as rpc:
        report = books_at_head(rpc, domain.verifying_contract, from_block)
        if report.chain_id != domain.chain_id:
            raise FundsUnavailableError(
                f"{rpc_url} serves chain {report.chain_id}, the escrow is on {domain.chain_id}"
            )
        gas = [("eth_getBalance", [operator, hex(report.to_block)]), ("eth_gasPrice", [])]
        balance, gas_price = (rpc_int(answer) for answer in rpc.batch(gas))
    batches = settings.operator_balance_alert_batches
    batch_cost = status.batch_gas * int(status.max_fee_per_gas) if status else DEFAULT_BATCH_GAS * gas_price
    return Funds(
        chain_id=report.chain_id,
        escrow=report.escrow,
        block=report.to_block,
        from_block=from_block,
        tokens=[
            TokenFunds(
                token=book.token,
                held=str(book.held),
                escrowed=str(book.escrowed),
                merchant=str(book.merchant),
                fees=str(book.fees),
                refund_credits=str(book.refund_credits),
                owed=str(book.owed),
            )
            for book in report.books
        ],
        findings=[finding.detail for finding in report.findings],
        operator=OperatorGas(
            address=operator,
            balance=str(balance),
            needed=str(batches * batch_cost),
            alert_batches=batches,
            low=balance < batches * batch_cost,
        ),
        settlement=lag,
    )
