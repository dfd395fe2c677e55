"""Who may change what: the owner administers within bounds (no renouncing, payout changes
delayed and cancellable), the operator settles and can be revoked at once, nobody else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ape
from ape import chain
from liandong.chain.quotes import Quote

from .conftest import order_terms

ZERO = "0x0000000000000000000000000000000000000000"
PAYOUT_DELAY = 2 * 24 * 3600


def test_owner_only_administration(
    escrow: Any, operator: Any, stranger: Any, payout: Any, fee_recipient: Any
) -> None:
    for caller in (operator, stranger):
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.setOperator(caller, sender=caller)
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.proposePayout(caller, sender=caller)
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.setFee(caller, 100, sender=caller)
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.pause(sender=caller)
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.unpause(sender=caller)
    assert escrow.operator() == operator.address
    assert escrow.payout() == payout.address
    assert escrow.feeRecipient() == fee_recipient.address


def test_fee_is_capped_and_addresses_are_never_zero(escrow: Any, owner: Any, fee_recipient: Any) -> None:
    with ape.reverts(escrow.FeeTooHigh, feeBps=1_001, maxFeeBps=1_000):
        escrow.setFee(fee_recipient, 1_001, sender=owner)
    for setter in (escrow.setOperator, escrow.proposePayout):
        with ape.reverts(escrow.ZeroAddress):
            setter(ZERO, sender=owner)
    with ape.reverts(escrow.ZeroAddress):
        escrow.setFee(ZERO, 0, sender=owner)


def test_rotating_the_operator_invalidates_its_quotes(
    escrow: Any,
    owner: Any,
    operator: Any,
    stranger: Any,
    buyer: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    quote = make_quote()
    receipt = escrow.setOperator(stranger, sender=owner)
    [event] = receipt.decode_logs(escrow.OperatorChanged)
    assert (event.previousOperator, event.newOperator) == (operator.address, stranger.address)
    with ape.reverts(escrow.InvalidQuoteSignature):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)
    escrow.pay(quote.as_abi_tuple(), sign(quote, signer=stranger), sender=buyer, value=quote.amount)


def test_ownership_moves_in_two_steps_and_cannot_be_renounced(escrow: Any, owner: Any, stranger: Any) -> None:
    with ape.reverts(escrow.OwnershipCannotBeRenounced):
        escrow.renounceOwnership(sender=owner)
    escrow.transferOwnership(stranger, sender=owner)
    assert escrow.owner() == owner.address
    escrow.acceptOwnership(sender=stranger)
    assert escrow.owner() == stranger.address


def test_a_payout_change_takes_effect_only_after_the_delay(
    escrow: Any, owner: Any, payout: Any, stranger: Any, accounts: Any
) -> None:
    new_payout = accounts[7]
    receipt = escrow.proposePayout(new_payout, sender=owner)
    [proposed] = receipt.decode_logs(escrow.PayoutChangeProposed)
    assert proposed.newPayout == new_payout.address
    assert proposed.effectiveAt == receipt.timestamp + PAYOUT_DELAY
    assert (escrow.pendingPayout(), escrow.pendingPayoutAt()) == (new_payout.address, proposed.effectiveAt)

    chain.pending_timestamp = proposed.effectiveAt - 1
    with ape.reverts(escrow.PayoutChangeNotReady, effectiveAt=proposed.effectiveAt):
        escrow.applyPayout(sender=stranger)
    chain.pending_timestamp = proposed.effectiveAt
    receipt = escrow.applyPayout(sender=stranger)  # anyone may apply it
    [changed] = receipt.decode_logs(escrow.PayoutChanged)
    assert (changed.previousPayout, changed.newPayout) == (payout.address, new_payout.address)
    assert escrow.payout() == new_payout.address
    assert escrow.pendingPayout() == ZERO


def test_the_payout_address_cancels_a_change_a_stolen_owner_key_proposed(
    escrow: Any, owner: Any, payout: Any, stranger: Any
) -> None:
    escrow.proposePayout(stranger, sender=owner)  # the thief holds the owner key
    with ape.reverts(escrow.NotMerchant):
        escrow.cancelPayout(sender=stranger)
    receipt = escrow.cancelPayout(sender=payout)
    [cancelled] = receipt.decode_logs(escrow.PayoutChangeCancelled)
    assert (cancelled.cancelledPayout, cancelled.by) == (stranger.address, payout.address)
    chain.pending_timestamp = chain.pending_timestamp + PAYOUT_DELAY + 1
    with ape.reverts(escrow.NoPendingPayout):
        escrow.applyPayout(sender=stranger)
    assert escrow.payout() == payout.address


def test_the_operator_is_revoked_at_once(
    escrow: Any,
    owner: Any,
    operator: Any,
    stranger: Any,
    buyer: Any,
    paid: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    quote = paid()
    with ape.reverts(escrow.NotOwnerOrOperator):
        escrow.revokeOperator(sender=stranger)
    receipt = escrow.revokeOperator(sender=operator)  # the operator itself, or the owner
    [event] = receipt.decode_logs(escrow.OperatorChanged)
    assert (event.previousOperator, event.newOperator) == (operator.address, ZERO)
    assert escrow.operator() == ZERO
    with ape.reverts(escrow.OperatorAlreadyRevoked):
        escrow.revokeOperator(sender=owner)

    fresh = make_quote()
    with ape.reverts(escrow.InvalidQuoteSignature):
        escrow.pay(fresh.as_abi_tuple(), sign(fresh), sender=buyer, value=fresh.amount)
    with ape.reverts(escrow.NotOperator):
        escrow.recordDelivery(order_terms(quote, buyer), b"\x00" * 32, sender=operator)

    # The buyer still takes the money back after the deadline; a new operator can be set.
    chain.pending_timestamp = quote.delivery_deadline + 1
    escrow.refund(order_terms(quote, buyer), sender=buyer)
    escrow.setOperator(stranger, sender=owner)
    assert escrow.operator() == stranger.address


def test_a_stolen_operator_key_cannot_take_funds(escrow: Any, operator: Any, buyer: Any, paid: Any) -> None:
    quote = paid()
    terms = order_terms(quote, buyer)
    # It can settle, but a refund goes to the buyer and a delivery credits the merchant's payout.
    escrow.recordDelivery(terms, b"\x00" * 32, sender=operator)
    with ape.reverts(escrow.NotMerchant):
        escrow.withdraw(quote.token, sender=operator)
    with ape.reverts(escrow.OwnableUnauthorizedAccount):
        escrow.proposePayout(operator, sender=operator)
    with ape.reverts(escrow.NotMerchant):
        escrow.cancelPayout(sender=operator)
