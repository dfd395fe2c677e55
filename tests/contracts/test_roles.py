"""Who may change what: the owner administers, the operator settles, nobody else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ape
from liandong.chain.quotes import Quote


def test_owner_only_administration(
    escrow: Any, operator: Any, stranger: Any, payout: Any, fee_recipient: Any
) -> None:
    for caller in (operator, stranger):
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.setOperator(caller, sender=caller)
        with ape.reverts(escrow.OwnableUnauthorizedAccount):
            escrow.setPayout(caller, sender=caller)
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
    zero = "0x0000000000000000000000000000000000000000"
    with ape.reverts(escrow.FeeTooHigh, feeBps=1_001, maxFeeBps=1_000):
        escrow.setFee(fee_recipient, 1_001, sender=owner)
    for setter in (escrow.setOperator, escrow.setPayout):
        with ape.reverts(escrow.ZeroAddress):
            setter(zero, sender=owner)
    with ape.reverts(escrow.ZeroAddress):
        escrow.setFee(zero, 0, sender=owner)


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


def test_ownership_moves_in_two_steps(escrow: Any, owner: Any, stranger: Any) -> None:
    escrow.transferOwnership(stranger, sender=owner)
    assert escrow.owner() == owner.address
    escrow.acceptOwnership(sender=stranger)
    assert escrow.owner() == stranger.address


def test_a_stolen_operator_key_cannot_take_funds(escrow: Any, operator: Any, buyer: Any, paid: Any) -> None:
    quote = paid()
    terms = quote.order_terms(str(buyer.address))
    # It can settle, but a refund goes to the buyer and a delivery credits the merchant's payout.
    escrow.recordDelivery(terms, b"\x00" * 32, sender=operator)
    with ape.reverts(escrow.NotMerchant):
        escrow.withdraw(quote.token, sender=operator)
    with ape.reverts(escrow.OwnableUnauthorizedAccount):
        escrow.setPayout(operator, sender=operator)
