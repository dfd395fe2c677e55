"""Fixtures for the escrow's tests on a real anvil chain."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from ape import chain
from eth_utils.address import to_checksum_address
from liandong.chain.quotes import NATIVE_COIN, EscrowDomain, Quote, sign_quote

ZERO_ADDRESS = NATIVE_COIN
PRICE = 10**16  # 0.01 of the native coin
TOKEN_PRICE = 25 * 10**6  # 25 units of a 6-decimals stablecoin
QUOTE_LIFETIME = 600
# From the quote's creation to its delivery deadline: the escrow wants at least
# MIN_DELIVERY_WINDOW (1 hour) between the quote's expiry and the deadline.
DELIVERY_WINDOW = QUOTE_LIFETIME + 2 * 3600


def order_terms(quote: Quote, payer: Any, fee_bps: int = 0) -> tuple[bytes, str, str, int, int, int]:
    """The escrow's `Order` struct for `quote` once `payer` paid it while the fee was `fee_bps`
    (built here from the quote's fields, so these tests do not depend on the backend's encoder)."""
    return (
        quote.order_id,
        to_checksum_address(str(getattr(payer, "address", payer))),
        to_checksum_address(quote.token),
        quote.amount,
        quote.delivery_deadline,
        fee_bps,
    )


@pytest.fixture(scope="session")
def owner(accounts: Any) -> Any:
    return accounts[0]


@pytest.fixture(scope="session")
def operator(accounts: Any) -> Any:
    return accounts[1]


@pytest.fixture(scope="session")
def payout(accounts: Any) -> Any:
    return accounts[2]


@pytest.fixture(scope="session")
def fee_recipient(accounts: Any) -> Any:
    return accounts[3]


@pytest.fixture(scope="session")
def buyer(accounts: Any) -> Any:
    return accounts[4]


@pytest.fixture(scope="session")
def other_buyer(accounts: Any) -> Any:
    return accounts[5]


@pytest.fixture(scope="session")
def stranger(accounts: Any) -> Any:
    return accounts[6]


@pytest.fixture(scope="session")
def escrow(project: Any, owner: Any, operator: Any, payout: Any, fee_recipient: Any) -> Any:
    return owner.deploy(project.LiandongEscrow, owner, operator, payout, fee_recipient, 0)


@pytest.fixture(scope="session")
def domain(escrow: Any) -> EscrowDomain:
    return EscrowDomain(chain.chain_id, str(escrow.address))


def _funded(token: Any, deployer: Any, holders: list[Any]) -> Any:
    for holder in holders:
        token.mint(holder, 1_000_000 * 10**6, sender=deployer)
    return token


@pytest.fixture(scope="session")
def stable(project: Any, owner: Any, buyer: Any, other_buyer: Any) -> Any:
    """A standard ERC-20 with EIP-2612 permit."""
    token = owner.deploy(project.MintableToken, "Stable USD", "SUSD", 6)
    return _funded(token, owner, [buyer, other_buyer])


@pytest.fixture(scope="session")
def usdt(project: Any, owner: Any, buyer: Any, other_buyer: Any) -> Any:
    """A token whose transfers return no bool."""
    return _funded(owner.deploy(project.NoReturnToken), owner, [buyer, other_buyer])


@pytest.fixture(scope="session")
def fee_token(project: Any, owner: Any, buyer: Any) -> Any:
    """A token that delivers 1 % less than sent."""
    return _funded(owner.deploy(project.FeeOnTransferToken), owner, [buyer])


@pytest.fixture
def make_quote() -> Callable[..., Quote]:
    def make(**terms: Any) -> Quote:
        now = chain.pending_timestamp
        values: dict[str, Any] = {
            "order_id": os.urandom(32),
            "product_id": 7,
            "quantity": 1,
            "token": ZERO_ADDRESS,
            "amount": PRICE,
            "buyer": ZERO_ADDRESS,
            "expiry": now + QUOTE_LIFETIME,
            "delivery_deadline": now + DELIVERY_WINDOW,
        }
        values.update(terms)
        return Quote(**values)

    return make


@pytest.fixture
def sign(domain: EscrowDomain, operator: Any) -> Callable[..., bytes]:
    def signed(quote: Quote, signer: Any = None, on: EscrowDomain | None = None) -> bytes:
        return sign_quote(quote, on or domain, (signer or operator).private_key)

    return signed


@pytest.fixture
def paid(escrow: Any, buyer: Any, make_quote: Callable[..., Quote], sign: Callable[..., bytes]) -> Any:
    """Pays an order in the native coin (or `token`, approved first) and returns its quote."""

    def pay(payer: Any = None, token: Any = None, **terms: Any) -> Quote:
        payer = payer or buyer
        if token is None:
            quote = make_quote(**terms)
            escrow.pay(quote.as_abi_tuple(), sign(quote), sender=payer, value=quote.amount)
            return quote
        quote = make_quote(token=str(token.address), amount=terms.pop("amount", TOKEN_PRICE), **terms)
        token.approve(escrow, quote.amount, sender=payer)
        escrow.pay(quote.as_abi_tuple(), sign(quote), sender=payer)
        return quote

    return pay
