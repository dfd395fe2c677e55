"""Paying into escrow: native coin and ERC-20s of every shape, and every way a payment is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ape
from ape import chain
from eth_account import Account
from eth_account.messages import encode_typed_data
from liandong.chain.quotes import EIP712_DOMAIN_FIELDS, EscrowDomain, Quote

from .conftest import TOKEN_PRICE, order_terms

PAID = 1


def _permit(
    token: Any, holder: Any, spender: Any, amount: int, deadline: int
) -> tuple[int, int, bytes, bytes]:
    """An EIP-2612 permit signed by `holder`, as (deadline, v, r, s)."""
    typed = {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_FIELDS,
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": token.name(),
            "version": "1",
            "chainId": chain.chain_id,
            "verifyingContract": str(token.address),
        },
        "message": {
            "owner": str(holder.address),
            "spender": str(spender.address),
            "value": amount,
            "nonce": token.nonces(holder),
            "deadline": deadline,
        },
    }
    signed = Account.sign_message(encode_typed_data(full_message=typed), holder.private_key)
    return deadline, signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def test_pay_native_records_the_order_and_emits_every_term(
    escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(product_id=42, quantity=3)
    receipt = escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)

    assert escrow.balance == quote.amount
    status, terms_hash = escrow.orderStatus(quote.order_id)
    assert status == PAID
    assert terms_hash == escrow.orderTermsHash(order_terms(quote, buyer))
    [event] = receipt.decode_logs(escrow.OrderPaid)
    assert event.orderId == quote.order_id
    assert event.buyer == buyer.address
    assert (event.productId, event.quantity, event.amount) == (42, 3, quote.amount)
    assert event.token == quote.token
    assert event.deliveryDeadline == quote.delivery_deadline
    assert event.feeBps == 0


def test_the_fee_at_payment_is_part_of_the_terms(
    escrow: Any,
    owner: Any,
    buyer: Any,
    fee_recipient: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    escrow.setFee(fee_recipient, 300, sender=owner)
    quote = make_quote()
    receipt = escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)
    [event] = receipt.decode_logs(escrow.OrderPaid)
    assert event.feeBps == 300
    escrow.setFee(fee_recipient, 0, sender=owner)
    assert escrow.orderStatus(quote.order_id)[1] == escrow.orderTermsHash(order_terms(quote, buyer, 300))


def test_zero_amount_and_a_short_delivery_window_are_refused(
    escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    free = (*quote.as_abi_tuple()[:4], 0, *quote.as_abi_tuple()[5:])
    with ape.reverts(escrow.ZeroAmount):
        escrow.pay(free, sign(quote), sender=buyer)
    rushed = make_quote(expiry=quote.expiry, delivery_deadline=quote.expiry + 3600 - 1)
    with ape.reverts(
        escrow.DeliveryWindowTooShort, expiry=rushed.expiry, deliveryDeadline=rushed.delivery_deadline
    ):
        escrow.pay(rushed.as_abi_tuple(), sign(rushed), sender=buyer, value=rushed.amount)
    enough = make_quote(expiry=quote.expiry, delivery_deadline=quote.expiry + 3600)
    escrow.pay(enough.as_abi_tuple(), sign(enough), sender=buyer, value=enough.amount)
    assert escrow.orderStatus(enough.order_id)[0] == PAID


def test_pay_with_a_standard_token(escrow: Any, buyer: Any, stable: Any, paid: Any) -> None:
    before = stable.balanceOf(buyer)
    quote = paid(token=stable)
    assert stable.balanceOf(escrow) == TOKEN_PRICE
    assert stable.balanceOf(buyer) == before - TOKEN_PRICE
    assert escrow.orderStatus(quote.order_id)[0] == PAID


def test_pay_with_a_token_that_returns_no_bool(escrow: Any, buyer: Any, usdt: Any, paid: Any) -> None:
    quote = paid(token=usdt)
    assert usdt.balanceOf(escrow) == TOKEN_PRICE
    assert escrow.orderStatus(quote.order_id)[0] == PAID


def test_fee_on_transfer_token_is_refused(
    escrow: Any, buyer: Any, fee_token: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(token=str(fee_token.address), amount=1_000)
    fee_token.approve(escrow, quote.amount, sender=buyer)
    with ape.reverts(escrow.WrongAmount, expected=1_000, received=990):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer)
    assert escrow.orderStatus(quote.order_id)[0] == 0


def test_pay_with_permit_needs_no_approval(
    escrow: Any, buyer: Any, stable: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(token=str(stable.address), amount=TOKEN_PRICE)
    assert stable.allowance(buyer, escrow) == 0
    permit = _permit(stable, buyer, escrow, quote.amount, chain.pending_timestamp + 600)
    escrow.payWithPermit(quote.as_abi_tuple(), sign(quote), permit, sender=buyer)
    assert stable.balanceOf(escrow) == TOKEN_PRICE
    assert escrow.orderStatus(quote.order_id)[0] == PAID


def test_front_run_permit_does_not_block_the_payment(
    escrow: Any,
    buyer: Any,
    stranger: Any,
    stable: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    quote = make_quote(token=str(stable.address), amount=TOKEN_PRICE)
    permit = _permit(stable, buyer, escrow, quote.amount, chain.pending_timestamp + 600)
    # Someone copies the permit from the mempool and submits it first: its nonce is now used.
    stable.permit(buyer, escrow, quote.amount, *permit, sender=stranger)
    escrow.payWithPermit(quote.as_abi_tuple(), sign(quote), permit, sender=buyer)
    assert escrow.orderStatus(quote.order_id)[0] == PAID


def test_permit_that_fails_without_allowance_reverts_in_the_transfer(
    escrow: Any, buyer: Any, stable: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(token=str(stable.address), amount=TOKEN_PRICE)
    bad_permit = (chain.pending_timestamp + 600, 27, b"\x01" * 32, b"\x02" * 32)
    with ape.reverts(stable.ERC20InsufficientAllowance):
        escrow.payWithPermit(quote.as_abi_tuple(), sign(quote), bad_permit, sender=buyer)


def test_signature_by_anyone_but_the_operator_is_refused(
    escrow: Any, buyer: Any, stranger: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    with ape.reverts(escrow.InvalidQuoteSignature):
        escrow.pay(quote.as_abi_tuple(), sign(quote, signer=stranger), sender=buyer, value=quote.amount)


def test_malformed_signature_is_refused(
    escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    with ape.reverts(escrow.InvalidQuoteSignature):
        escrow.pay(quote.as_abi_tuple(), sign(quote)[:64], sender=buyer, value=quote.amount)


def test_quote_signed_for_another_chain_or_escrow_is_refused(
    escrow: Any, buyer: Any, stranger: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    for domain in (EscrowDomain(1, str(escrow.address)), EscrowDomain(chain.chain_id, str(stranger.address))):
        with ape.reverts(escrow.InvalidQuoteSignature):
            escrow.pay(quote.as_abi_tuple(), sign(quote, on=domain), sender=buyer, value=quote.amount)


def test_tampered_amount_is_refused(
    escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    cheaper = make_quote(order_id=quote.order_id, amount=1, expiry=quote.expiry)
    with ape.reverts(escrow.InvalidQuoteSignature):
        escrow.pay(cheaper.as_abi_tuple(), sign(quote), sender=buyer, value=1)


def test_paying_with_another_token_than_quoted_is_refused(
    escrow: Any,
    buyer: Any,
    stable: Any,
    usdt: Any,
    make_quote: Callable[..., Quote],
    sign: Callable[..., bytes],
) -> None:
    quote = make_quote(token=str(stable.address), amount=TOKEN_PRICE)
    swapped = make_quote(
        order_id=quote.order_id, token=str(usdt.address), amount=TOKEN_PRICE, expiry=quote.expiry
    )
    usdt.approve(escrow, TOKEN_PRICE, sender=buyer)
    with ape.reverts(escrow.InvalidQuoteSignature):
        escrow.pay(swapped.as_abi_tuple(), sign(quote), sender=buyer)


def test_expired_quote_is_refused(
    escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(expiry=chain.pending_timestamp + 10)
    chain.mine(timestamp=quote.expiry + 1)
    with ape.reverts(escrow.QuoteExpired, expiry=quote.expiry):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)


def test_an_order_id_pays_only_once(
    escrow: Any, buyer: Any, other_buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)
    with ape.reverts(escrow.OrderAlreadyExists, orderId=quote.order_id):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=other_buyer, value=quote.amount)


def test_wrong_native_amount_is_refused(
    escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    for sent in (quote.amount - 1, quote.amount + 1, 0):
        with ape.reverts(escrow.WrongAmount, expected=quote.amount, received=sent):
            escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=sent)


def test_native_coin_sent_with_a_token_order_is_refused(
    escrow: Any, buyer: Any, stable: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(token=str(stable.address), amount=TOKEN_PRICE)
    stable.approve(escrow, TOKEN_PRICE, sender=buyer)
    with ape.reverts(escrow.WrongAmount, expected=0, received=1):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=1)


def test_quote_for_one_buyer_cannot_be_paid_by_another(
    escrow: Any, buyer: Any, other_buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote(buyer=str(buyer.address))
    with ape.reverts(escrow.WrongBuyer):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=other_buyer, value=quote.amount)
    escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)
    assert escrow.orderStatus(quote.order_id)[0] == PAID


def test_pause_stops_payments_until_unpaused(
    escrow: Any, owner: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]
) -> None:
    quote = make_quote()
    escrow.pause(sender=owner)
    with ape.reverts(escrow.PaymentsArePaused):
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)
    escrow.unpause(sender=owner)
    escrow.pay(quote.as_abi_tuple(), sign(quote), sender=buyer, value=quote.amount)
    assert escrow.orderStatus(quote.order_id)[0] == PAID


def test_native_coin_cannot_be_sent_outside_an_order(escrow: Any, buyer: Any) -> None:
    with ape.reverts():
        buyer.transfer(escrow, 1)
