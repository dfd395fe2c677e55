"""Prices as merchants write them: "10 USDT" by symbol on every chain of the shop that has it, one
chain by id, or an address in base units; what cannot be priced is refused and nothing is stored."""

from __future__ import annotations

import pytest
from liandong.chain.profiles import token
from liandong.chain.quotes import NATIVE_COIN
from liandong.services.catalogue import (
    CatalogueError,
    PriceError,
    PriceIn,
    Pricing,
    ProductIn,
    TokenRef,
    create_product,
)
from liandong.store.models import ProductPrice
from pydantic import ValidationError
from sqlmodel import Session, select

ARBITRUM, BASE, LOCAL = 42161, 8453, 31337
USDT_ARB = token(ARBITRUM, "USDT")
USDC_BASE = token(BASE, "USDC")
DEMO = "0x" + "d0" * 20
PRICING = Pricing(
    {
        ARBITRUM: {
            "ETH": TokenRef(NATIVE_COIN, 18),
            "USDT": TokenRef(USDT_ARB.address.lower(), USDT_ARB.decimals),
        },
        BASE: {
            "ETH": TokenRef(NATIVE_COIN, 18),
            "USDC": TokenRef(USDC_BASE.address.lower(), USDC_BASE.decimals),
        },
        LOCAL: {"ETH": TokenRef(NATIVE_COIN, 18), "DUSD": TokenRef(DEMO, 6)},
    }
)


def _rows(*prices: PriceIn) -> list[tuple[int, str, str]]:
    return sorted((row.chain_id, row.token, row.amount) for price in prices for row in price.resolve(PRICING))


def test_a_symbol_prices_every_chain_that_has_it_in_its_own_decimals() -> None:
    assert _rows(PriceIn(token="usdt", units="10")) == [(ARBITRUM, USDT_ARB.address.lower(), "10000000")]
    assert _rows(PriceIn(token="ETH", units="0.01")) == sorted(
        (chain_id, NATIVE_COIN, str(10**16)) for chain_id in (ARBITRUM, BASE, LOCAL)
    )
    assert _rows(PriceIn(chain_id=BASE, token="USDC", units="9.99")) == [
        (BASE, USDC_BASE.address.lower(), "9990000")
    ]


def test_an_address_is_the_first_chain_unless_named_and_takes_base_units_or_known_decimals() -> None:
    assert _rows(PriceIn(token=USDT_ARB.address, amount="5")) == [(ARBITRUM, USDT_ARB.address.lower(), "5")]
    assert _rows(PriceIn(chain_id=LOCAL, token=DEMO, units="1.5")) == [(LOCAL, DEMO, "1500000")]


@pytest.mark.parametrize(
    ("price", "refusal"),
    [
        (PriceIn(chain_id=BASE, token="USDT", units="10"), "no USDT on chain 8453"),
        (PriceIn(token="EURC", units="10"), "no EURC on any of its chains"),
        (PriceIn(chain_id=BASE, token="USDC", units="0.0000001"), "more decimals than the token's 6"),
        (PriceIn(chain_id=1, token=NATIVE_COIN, amount="1"), "no payments on chain 1"),
        (PriceIn(chain_id=LOCAL, token="0x" + "ab" * 20, units="1"), "decimals of 0xabab"),
    ],
)
def test_what_cannot_be_priced_is_refused_with_the_reason(price: PriceIn, refusal: str) -> None:
    with pytest.raises(PriceError, match=refusal):
        price.resolve(PRICING)


def test_a_price_needs_exactly_one_of_amount_and_units() -> None:
    for fields in ({"token": "USDT"}, {"token": "USDT", "units": "1", "amount": "1"}):
        with pytest.raises(ValidationError, match="either in base units"):
            PriceIn.model_validate(fields)
    with pytest.raises(ValidationError, match="positive decimal"):
        PriceIn(token="USDT", units="-1")


def test_two_prices_for_one_token_on_one_chain_store_nothing(session: Session) -> None:
    doubled = ProductIn(
        sku="doubled",
        name="doubled",
        prices=[PriceIn(token="USDT", units="10"), PriceIn(chain_id=ARBITRUM, token="USDT", units="11")],
    )
    with pytest.raises(CatalogueError, match="one price per token and chain"):
        create_product(session, doubled, PRICING)
    assert session.exec(select(ProductPrice)).all() == []
    created = create_product(
        session, ProductIn(sku="ok", name="ok", prices=[PriceIn(token="ETH", units="1")]), PRICING
    )
    assert {price.chain_id for price in created.prices} == {ARBITRUM, BASE, LOCAL}
