"""Settling paid orders: deliveries credit the merchant within the delivery window, refunds return
funds to the buyer only, after the window for the buyer; batches skip what they cannot settle."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import ape
import pytest
from ape import chain
from liandong.chain.quotes import Quote

from .conftest import TOKEN_PRICE, order_terms

PAID, DELIVERED, REFUNDED = 1, 2, 3
ZERO = "0x0000000000000000000000000000000000000000"
COMMITMENT = b"\x11" * 32
SKIP_UNKNOWN_ORDER, SKIP_TERMS_MISMATCH, SKIP_NOT_PAID, SKIP_WINDOW_CLOSED = 1, 2, 3, 4


def _terms(quote: Quote, payer: Any, fee_bps: int = 0) -> tuple[bytes, str, str, int, int, int]:
    return order_terms(quote, payer, fee_bps)


def _skips(receipt: Any, escrow: Any) -> list[tuple[bytes, int]]:
    return [(event.orderId, event.reason) for event in receipt.decode_logs(escrow.SettlementSkipped)]


def test_delivery_credits_the_merchant_and_publishes_the_commitment(
    escrow: Any, operator: Any, buyer: Any, paid: Any
) -> None:
    quote = paid()
    receipt = escrow.recordDelivery(_terms(quote, buyer), COMMITMENT, sender=operator)
    assert escrow.orderStatus(quote.order_id)[0] == DELIVERED
    assert escrow.merchantBalance(quote.token) == quote.amount
    [event] = receipt.decode_logs(escrow.OrderDelivered)
    assert (event.orderId, event.commitment, event.fee) == (quote.order_id, COMMITMENT, 0)


def test_platform_fee_is_accounted_apart_from_the_merchant(
    escrow: Any, owner: Any, operator: Any, buyer: Any, fee_recipient: Any, stable: Any, paid: Any
) -> None:
    escrow.setFee(fee_recipient, 250, sender=owner)
    quote = paid(token=stable)
    escrow.setFee(fee_recipient, 1_000, sender=owner)  # a later change does not touch a paid order
    escrow.recordDelivery(_terms(quote, buyer, 250), COMMITMENT, sender=operator)
    fee = TOKEN_PRICE * 250 // 10_000
    assert escrow.feeBalance(stable, fee_recipient) == fee
    assert escrow.merchantBalance(stable) == TOKEN_PRICE - fee

    escrow.withdrawFees(stable, fee_recipient, sender=fee_recipient)
    assert stable.balanceOf(fee_recipient) == fee
    assert escrow.feeBalance(stable, fee_recipient) == 0


def test_fees_stay_with_the_recipient_they_accrued_to(
    escrow: Any, owner: Any, operator: Any, buyer: Any, fee_recipient: Any, stranger: Any, paid: Any
) -> None:
    escrow.setFee(fee_recipient, 100, sender=owner)
    first, second = paid(), paid()
    escrow.recordDelivery(_terms(first, buyer, 100), COMMITMENT, sender=operator)
    escrow.setFee(stranger, 100, sender=owner)
    escrow.recordDelivery(_terms(second, buyer, 100), COMMITMENT, sender=operator)
    fee = first.amount // 100
    assert escrow.feeBalance(first.token, fee_recipient) == fee
    assert escrow.feeBalance(first.token, stranger) == fee
    with ape.reverts(escrow.NotFeeRecipient):
        escrow.withdrawFees(first.token, fee_recipient, sender=stranger)
    before = fee_recipient.balance
    escrow.withdrawFees(first.token, fee_recipient, sender=owner)  # paid to the recipient, not the owner
    assert fee_recipient.balance == before + fee


def test_batch_delivery_credits_each_token(
    escrow: Any, operator: Any, buyer: Any, other_buyer: Any, stable: Any, usdt: Any, paid: Any
) -> None:
    orders = [
        (paid(), buyer),
        (paid(payer=other_buyer), other_buyer),
        (paid(token=stable), buyer),
        (paid(token=usdt, payer=other_buyer), other_buyer),
        (paid(token=stable), buyer),
    ]
    deliveries = [(_terms(q, payer), os.urandom(32)) for q, payer in orders]
    receipt = escrow.recordDeliveries(deliveries, sender=operator)

    assert len(receipt.decode_logs(escrow.OrderDelivered)) == len(orders)
    assert all(escrow.orderStatus(q.order_id)[0] == DELIVERED for q, _ in orders)
    assert escrow.merchantBalance(orders[0][0].token) == 2 * orders[0][0].amount
    assert escrow.merchantBalance(stable) == 2 * TOKEN_PRICE
    assert escrow.merchantBalance(usdt) == TOKEN_PRICE


def test_one_bad_order_is_skipped_and_the_rest_of_the_batch_settles(
    escrow: Any, operator: Any, buyer: Any, paid: Any
) -> None:
    good, other = paid(), paid()
    forged = (*_terms(other, buyer)[:3], other.amount * 2, other.delivery_deadline, 0)
    receipt = escrow.recordDeliveries(
        [(forged, COMMITMENT), (_terms(good, buyer), COMMITMENT)], sender=operator
    )
    assert _skips(receipt, escrow) == [(other.order_id, SKIP_TERMS_MISMATCH)]
    assert escrow.orderStatus(good.order_id)[0] == DELIVERED
    assert escrow.orderStatus(other.order_id)[0] == PAID
    # The single call still reverts with the reason.
    with ape.reverts(escrow.OrderTermsMismatch, orderId=other.order_id):
        escrow.recordDelivery(forged, COMMITMENT, sender=operator)


def test_a_refund_batch_skips_an_order_refunded_meanwhile(
    escrow: Any, operator: Any, buyer: Any, other_buyer: Any, paid: Any
) -> None:
    mine, theirs = paid(), paid(payer=other_buyer)
    chain.pending_timestamp = mine.delivery_deadline + 1
    escrow.refund(_terms(mine, buyer), sender=buyer)  # lands before the shop's batch
    before = other_buyer.balance
    receipt = escrow.refundBatch([_terms(mine, buyer), _terms(theirs, other_buyer)], sender=operator)
    assert _skips(receipt, escrow) == [(mine.order_id, SKIP_NOT_PAID)]
    assert [event.orderId for event in receipt.decode_logs(escrow.OrderRefunded)] == [theirs.order_id]
    assert other_buyer.balance == before + theirs.amount


def test_the_double_dip_is_impossible(escrow: Any, operator: Any, buyer: Any, paid: Any) -> None:
    """A buyer who got the key cannot also take the money back, and a buyer who waited out the
    deadline gets the money back with no late delivery recorded against it."""
    late, delivered = paid(), paid()
    escrow.recordDelivery(_terms(delivered, buyer), COMMITMENT, sender=operator)
    # Past both deadlines (quoted a second apart on a busy machine, they may differ): the buyer's
    # refund of the delivered order must then fail on its status, not on its deadline.
    chain.pending_timestamp = max(late.delivery_deadline, delivered.delivery_deadline) + 1

    # Too late to deliver: refused alone, skipped in a batch.
    with ape.reverts(
        escrow.DeliveryWindowClosed, orderId=late.order_id, deliveryDeadline=late.delivery_deadline
    ):
        escrow.recordDelivery(_terms(late, buyer), COMMITMENT, sender=operator)
    receipt = escrow.recordDeliveries([(_terms(late, buyer), COMMITMENT)], sender=operator)
    assert _skips(receipt, escrow) == [(late.order_id, SKIP_WINDOW_CLOSED)]
    assert escrow.orderStatus(late.order_id)[0] == PAID

    # So the buyer takes it back, and it stays refunded.
    before = buyer.balance
    receipt = escrow.refund(_terms(late, buyer), sender=buyer)
    assert buyer.balance == before + late.amount - receipt.total_fees_paid
    with ape.reverts(escrow.WrongStatus, status=REFUNDED):
        escrow.recordDelivery(_terms(late, buyer), COMMITMENT, sender=operator)

    # The delivered order can never be refunded, by the buyer or the operator.
    with ape.reverts(escrow.WrongStatus, orderId=delivered.order_id, status=DELIVERED):
        escrow.refund(_terms(delivered, buyer), sender=buyer)
    receipt = escrow.refundBatch([_terms(delivered, buyer)], sender=operator)
    assert _skips(receipt, escrow) == [(delivered.order_id, SKIP_NOT_PAID)]
    assert escrow.orderStatus(delivered.order_id)[0] == DELIVERED
    assert escrow.merchantBalance(delivered.token) == delivered.amount


def test_only_the_operator_records_deliveries(escrow: Any, owner: Any, buyer: Any, paid: Any) -> None:
    quote = paid()
    for caller in (owner, buyer):
        with ape.reverts(escrow.NotOperator):
            escrow.recordDelivery(_terms(quote, buyer), COMMITMENT, sender=caller)
        with ape.reverts(escrow.NotOperator):
            escrow.recordDeliveries([(_terms(quote, buyer), COMMITMENT)], sender=caller)


def test_unknown_order_cannot_be_settled(escrow: Any, operator: Any, buyer: Any, make_quote: Any) -> None:
    quote = make_quote()
    with ape.reverts(escrow.UnknownOrder, orderId=quote.order_id):
        escrow.recordDelivery(_terms(quote, buyer), COMMITMENT, sender=operator)
    with ape.reverts(escrow.UnknownOrder, orderId=quote.order_id):
        escrow.refund(_terms(quote, buyer), sender=operator)


def test_terms_other_than_paid_are_refused(
    escrow: Any, operator: Any, buyer: Any, stranger: Any, paid: Any
) -> None:
    quote = paid()
    redirected = _terms(quote, stranger)
    with ape.reverts(escrow.OrderTermsMismatch):
        escrow.refund(redirected, sender=operator)
    with ape.reverts(escrow.OrderTermsMismatch):
        escrow.recordDelivery(redirected, COMMITMENT, sender=operator)


def test_refund_too_early_then_after_the_deadline(escrow: Any, buyer: Any, paid: Any) -> None:
    quote = paid()
    with ape.reverts(escrow.DeadlineNotReached, orderId=quote.order_id):
        escrow.refund(_terms(quote, buyer), sender=buyer)
    chain.pending_timestamp = quote.delivery_deadline  # the deadline itself is still too early
    with ape.reverts(escrow.DeadlineNotReached):
        escrow.refund(_terms(quote, buyer), sender=buyer)

    chain.pending_timestamp = quote.delivery_deadline + 1
    balance = buyer.balance
    receipt = escrow.refund(_terms(quote, buyer), sender=buyer)
    assert buyer.balance == balance + quote.amount - receipt.total_fees_paid
    assert escrow.orderStatus(quote.order_id)[0] == REFUNDED
    [event] = receipt.decode_logs(escrow.OrderRefunded)
    assert (event.buyer, event.amount, event.credited) == (buyer.address, quote.amount, False)


def test_double_refund_is_refused(escrow: Any, operator: Any, buyer: Any, paid: Any) -> None:
    quote = paid()
    escrow.refund(_terms(quote, buyer), sender=operator)
    with ape.reverts(escrow.WrongStatus, orderId=quote.order_id, status=REFUNDED):
        escrow.refund(_terms(quote, buyer), sender=operator)


def test_delivery_after_refund_and_refund_after_delivery_are_refused(
    escrow: Any, operator: Any, buyer: Any, paid: Any
) -> None:
    refunded, delivered = paid(), paid()
    escrow.refund(_terms(refunded, buyer), sender=operator)
    with ape.reverts(escrow.WrongStatus, status=REFUNDED):
        escrow.recordDelivery(_terms(refunded, buyer), COMMITMENT, sender=operator)

    escrow.recordDelivery(_terms(delivered, buyer), COMMITMENT, sender=operator)
    with ape.reverts(escrow.WrongStatus, status=DELIVERED):
        escrow.recordDelivery(_terms(delivered, buyer), COMMITMENT, sender=operator)
    chain.pending_timestamp = delivered.delivery_deadline + 1
    with ape.reverts(escrow.WrongStatus, status=DELIVERED):
        escrow.refund(_terms(delivered, buyer), sender=buyer)


def test_strangers_cannot_refund(escrow: Any, buyer: Any, stranger: Any, paid: Any) -> None:
    quote = paid()
    chain.pending_timestamp = quote.delivery_deadline + 1
    with ape.reverts(escrow.NotBuyerOrOperator):
        escrow.refund(_terms(quote, buyer), sender=stranger)


def test_operator_refunds_before_the_deadline_in_a_batch(
    escrow: Any, operator: Any, buyer: Any, other_buyer: Any, usdt: Any, paid: Any
) -> None:
    native, token = paid(), paid(token=usdt, payer=other_buyer)
    usdt_before = usdt.balanceOf(other_buyer)
    native_before = buyer.balance
    escrow.refundBatch([_terms(native, buyer), _terms(token, other_buyer)], sender=operator)
    assert usdt.balanceOf(other_buyer) == usdt_before + TOKEN_PRICE
    assert buyer.balance == native_before + native.amount
    assert escrow.balance == 0
    assert usdt.balanceOf(escrow) == 0


def test_refund_refused_by_the_buyer_is_credited_and_claimable(
    project: Any,
    escrow: Any,
    owner: Any,
    operator: Any,
    buyer: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    wallet = owner.deploy(project.RefusingReceiver)
    quote = make_quote()
    pay_call = escrow.pay.as_transaction(quote.as_abi_tuple(), sign(quote), value=quote.amount, sender=buyer)
    wallet.execute(escrow, pay_call.data, value=quote.amount, sender=buyer)
    paid_by_buyer = make_quote()
    escrow.pay(paid_by_buyer.as_abi_tuple(), sign(paid_by_buyer), sender=buyer, value=paid_by_buyer.amount)

    # The refusing wallet cannot block the batch: its refund is credited, the buyer's goes out.
    receipt = escrow.refundBatch([_terms(quote, wallet), _terms(paid_by_buyer, buyer)], sender=operator)
    credited = [event.credited for event in receipt.decode_logs(escrow.OrderRefunded)]
    assert credited == [True, False]
    assert escrow.refundCredit(quote.token, wallet) == quote.amount

    wallet.setAccepts(True, sender=buyer)
    claim = escrow.claimRefund.as_transaction(quote.token, wallet, sender=buyer)
    wallet.execute(escrow, claim.data, sender=buyer)
    assert wallet.balance == quote.amount
    assert escrow.refundCredit(quote.token, wallet) == 0
    with ape.reverts(escrow.NothingToWithdraw):
        escrow.claimRefund(quote.token, buyer, sender=buyer)


def test_a_credit_is_claimed_to_another_address(
    project: Any,
    escrow: Any,
    owner: Any,
    operator: Any,
    buyer: Any,
    stranger: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    wallet = owner.deploy(project.RefusingReceiver)  # it never accepts the native coin
    quote = make_quote()
    pay_call = escrow.pay.as_transaction(quote.as_abi_tuple(), sign(quote), value=quote.amount, sender=buyer)
    wallet.execute(escrow, pay_call.data, value=quote.amount, sender=buyer)
    escrow.refund(_terms(quote, wallet), sender=operator)

    with ape.reverts(escrow.ZeroAddress):
        wallet.execute(
            escrow, escrow.claimRefund.as_transaction(quote.token, ZERO, sender=buyer).data, sender=buyer
        )
    before = stranger.balance
    claim = escrow.claimRefund.as_transaction(quote.token, stranger, sender=buyer)
    receipt = wallet.execute(escrow, claim.data, sender=buyer)
    assert stranger.balance == before + quote.amount
    [event] = receipt.decode_logs(escrow.RefundClaimed)
    assert (event.buyer, event.to, event.amount) == (wallet.address, stranger.address, quote.amount)


def test_blocked_token_holder_refund_is_credited(
    escrow: Any, operator: Any, buyer: Any, usdt: Any, paid: Any
) -> None:
    quote = paid(token=usdt)
    usdt.setBlocked(buyer, True, sender=operator)
    escrow.refund(_terms(quote, buyer), sender=operator)
    assert escrow.refundCredit(usdt, buyer) == TOKEN_PRICE
    usdt.setBlocked(buyer, False, sender=operator)
    escrow.claimRefund(usdt, buyer, sender=buyer)
    assert escrow.refundCredit(usdt, buyer) == 0


@pytest.mark.parametrize("caller_name", ["owner", "payout"])
def test_merchant_withdraws_to_the_payout_address(
    request: pytest.FixtureRequest,
    caller_name: str,
    escrow: Any,
    operator: Any,
    buyer: Any,
    payout: Any,
    stable: Any,
    paid: Any,
) -> None:
    quote = paid(token=stable)
    escrow.recordDelivery(_terms(quote, buyer), COMMITMENT, sender=operator)
    receipt = escrow.withdraw(stable, sender=request.getfixturevalue(caller_name))
    assert stable.balanceOf(payout) == TOKEN_PRICE
    assert escrow.merchantBalance(stable) == 0
    [event] = receipt.decode_logs(escrow.MerchantWithdrawal)
    assert (event.recipient, event.amount) == (payout.address, TOKEN_PRICE)


def test_withdraw_by_a_stranger_or_the_operator_is_refused(
    escrow: Any, operator: Any, buyer: Any, stranger: Any, fee_recipient: Any, paid: Any
) -> None:
    quote = paid()
    escrow.recordDelivery(_terms(quote, buyer), COMMITMENT, sender=operator)
    for caller in (stranger, operator, buyer):
        with ape.reverts(escrow.NotMerchant):
            escrow.withdraw(quote.token, sender=caller)
        with ape.reverts(escrow.NotFeeRecipient):
            escrow.withdrawFees(quote.token, fee_recipient, sender=caller)


def test_nothing_to_withdraw(escrow: Any, owner: Any, fee_recipient: Any, paid: Any) -> None:
    quote = paid()  # escrowed, not delivered: not the merchant's yet
    with ape.reverts(escrow.NothingToWithdraw):
        escrow.withdraw(quote.token, sender=owner)
    with ape.reverts(escrow.NothingToWithdraw):
        escrow.withdrawFees(quote.token, fee_recipient, sender=owner)


def test_refunds_deliveries_and_withdrawals_work_while_paused(
    escrow: Any, owner: Any, operator: Any, buyer: Any, payout: Any, paid: Any
) -> None:
    refunded, delivered = paid(), paid()
    escrow.pause(sender=owner)
    escrow.refund(_terms(refunded, buyer), sender=operator)
    escrow.recordDelivery(_terms(delivered, buyer), COMMITMENT, sender=operator)
    before = payout.balance
    escrow.withdraw(delivered.token, sender=owner)
    assert payout.balance == before + delivered.amount
