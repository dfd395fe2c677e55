"""Quotes: bound to the wallet that pays unless an open quote is asked for; a delivery deadline
that leaves the escrow's minimum window (and by default a day) after the quote expires."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from liandong.chain.escrow import MIN_DELIVERY_WINDOW
from liandong.chain.quotes import NATIVE_COIN, EscrowDomain, Quote, quote_typed_data, sign_quote
from liandong.services.orders import (
    DELIVERY_WINDOW_SECONDS,
    QUOTE_TTL_SECONDS,
    BuyerRequiredError,
    IssuedQuote,
    OrderError,
    QuoteAsk,
    QuoteSigner,
    SoldOutError,
    create_quote,
    create_quotes,
)
from liandong.store.models import ProductPrice, ShopOrder
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault
from sqlmodel import Session

from tests.vault.conftest import add_product

OPERATOR = Account.create()
DOMAIN = EscrowDomain(31337, "0x" + "ee" * 20)
CHAIN = DOMAIN.chain_id
BUYER = "0x" + "12" * 20
ZERO = "0x" + "00" * 20


def _product(session: Session) -> int:
    product_id = add_product(session, "q")
    session.add(ProductPrice(product_id=product_id, chain_id=CHAIN, token=NATIVE_COIN, amount="1000"))
    session.commit()
    import_keys(session, Vault(Keyring(MasterKey.generate(), ())), product_id, "k.txt", b"Q-1\n", "txt")
    return product_id


def test_a_quote_names_its_payer_unless_an_open_one_is_asked_for(session: Session) -> None:
    product = _product(session)
    key = OPERATOR.key.to_0x_hex()
    quote = {"product_id": product, "quantity": 1, "token": NATIVE_COIN, "now": 1_000_000}
    with pytest.raises(BuyerRequiredError):
        create_quote(session, DOMAIN, key, **quote)  # type: ignore[arg-type]
    with pytest.raises(OrderError):
        create_quote(session, DOMAIN, key, buyer=BUYER, open_quote=True, **quote)  # type: ignore[arg-type]
    bound = create_quote(session, DOMAIN, key, buyer=BUYER, **quote)  # type: ignore[arg-type]
    assert bound.quote.buyer == BUYER
    assert bound.order.buyer == BUYER
    anyone = create_quote(session, DOMAIN, key, open_quote=True, **quote)  # type: ignore[arg-type]
    assert anyone.quote.buyer == ZERO

    window = bound.quote.delivery_deadline - bound.quote.expiry
    assert bound.quote.expiry == 1_000_000 + QUOTE_TTL_SECONDS
    assert window == DELIVERY_WINDOW_SECONDS == 24 * 3600 >= MIN_DELIVERY_WINDOW
    with pytest.raises(OrderError):
        create_quote(session, DOMAIN, key, buyer=BUYER, delivery_window=MIN_DELIVERY_WINDOW - 1, **quote)  # type: ignore[arg-type]


def test_a_quote_comes_back_whole_from_its_json_form() -> None:
    quote = Quote(
        order_id=bytes(range(32)),
        product_id=7,
        quantity=2,
        token=NATIVE_COIN,
        amount=2**255,
        buyer=BUYER,
        expiry=1_000,
        delivery_deadline=1_000 + MIN_DELIVERY_WINDOW,
    )
    terms = json.loads(json.dumps(quote.to_json()))
    assert (terms["orderId"], terms["amount"]) == ("0x" + bytes(range(32)).hex(), str(2**255))
    assert Quote.from_json(terms) == quote


def test_the_quick_signature_is_the_one_a_wallet_makes_of_the_typed_data() -> None:
    """`sign_quote` hashes the words itself: the same signature as eth_account's EIP-712 encoder
    over `quote_typed_data` (the document a wallet signs), for a bound and an open quote."""
    for buyer in (BUYER, ZERO):
        quote = Quote(
            order_id=bytes(range(32)),
            product_id=7,
            quantity=2,
            token="0x" + "Ab" * 20,
            amount=2**255,
            buyer=buyer,
            expiry=1_000,
            delivery_deadline=1_000 + MIN_DELIVERY_WINDOW,
        )
        typed = encode_typed_data(full_message=quote_typed_data(quote, DOMAIN))
        expected = bytes(Account.sign_message(typed, OPERATOR.key).signature)
        assert sign_quote(quote, DOMAIN, OPERATOR.key.to_0x_hex()) == expected
        assert sign_quote(quote, DOMAIN, bytes(OPERATOR.key)) == expected


def test_a_batch_of_quotes_refuses_each_ask_on_its_own_and_stores_the_rest(session: Session) -> None:
    """One transaction for the batch, but each ask answered as `create_quote` would answer it alone."""
    product = _product(session)  # one key left
    asks = [
        QuoteAsk(CHAIN, product, 1, NATIVE_COIN, buyer=BUYER),
        QuoteAsk(CHAIN, product, 2, NATIVE_COIN, buyer=BUYER),  # more keys than the product has
        QuoteAsk(CHAIN, product + 1, 1, NATIVE_COIN, buyer=BUYER),  # no such product
        QuoteAsk(CHAIN, product, 1, NATIVE_COIN),  # no buyer, no open quote
        QuoteAsk(CHAIN, product, 1, NATIVE_COIN, open_quote=True),
    ]
    outcomes = create_quotes(
        session, {DOMAIN.chain_id: QuoteSigner(DOMAIN, OPERATOR.key.to_0x_hex())}, asks, now=1_000_000
    )
    assert [type(outcome) for outcome in outcomes] == [
        IssuedQuote,
        SoldOutError,
        OrderError,
        BuyerRequiredError,
        IssuedQuote,
    ]
    stored = [outcome for outcome in outcomes if isinstance(outcome, IssuedQuote)]
    assert len({issued.order.id for issued in stored}) == 2
    for issued in stored:
        row = session.get(ShopOrder, issued.order.id)
        assert row is not None
        assert row.quote_signature == "0x" + issued.signature.hex()
