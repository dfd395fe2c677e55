"""Products and their prices: what the storefront lists and the merchant edits.

The buyer's view (`storefront`) and the merchant's (`merchant_products`, with stock levels) are
read from the same rows here, and products are created and edited only through `ProductIn` and
`ProductPatch`, so the API and the CLI check a product the same way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from liandong.core.errors import ConflictError, InvalidError, NotFoundError
from liandong.services.orders import MAX_UINT256
from liandong.services.stats import StockLevel, stock_levels
from liandong.store.models import Product, ProductPrice

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9.]{0,15}$")
_UNITS = re.compile(r"^[0-9]{1,70}(\.[0-9]{1,36})?$")


class CatalogueError(ConflictError):
    """A product edit that cannot be made (a SKU taken, two prices in one token)."""


class ProductNotFoundError(NotFoundError, CatalogueError):
    """No product has this id."""


class StockState(enum.StrEnum):
    IN_STOCK = "in_stock"
    LOW = "low"
    SOLD_OUT = "sold_out"


class PriceError(InvalidError, CatalogueError):
    """A price that names no token the shop knows on that chain, or cannot be paid in its units."""


@dataclass(frozen=True)
class TokenRef:
    address: str
    """Lower-case; `NATIVE_COIN` for the chain's coin."""
    decimals: int


@dataclass(frozen=True)
class Pricing:
    """What prices may name: by chain id (the shop's first chain first), its tokens by symbol —
    the native coin, the profile's canonical USDT/USDC, the deployment's own tokens."""

    chains: dict[int, dict[str, TokenRef]]

    @property
    def default_chain(self) -> int:
        return next(iter(self.chains))


class PriceIn(BaseModel):
    """A price as the merchant writes it: `{"token": "USDT", "units": "10"}` is 10 USDT on every
    chain of the shop that has a canonical USDT; `{"chain_id": 8453, "token": "0x…", "amount":
    "10000000"}` the same in base units of one token on one chain."""

    chain_id: int | None = Field(
        default=None,
        ge=1,
        description="The chain. Unset: every chain the shop knows the token's symbol on, or for an "
        "address the shop's first chain.",
    )
    token: Annotated[
        str,
        Field(
            description="A symbol (USDT, USDC, the native coin's, a deployment token's) or a token address; "
            "0x000…000 for the chain's native coin."
        ),
    ]
    amount: str | None = Field(
        default=None, description="Price of one unit in the token's base units (decimal)."
    )
    units: str | None = Field(
        default=None, description='Price of one unit in whole tokens ("9.99"), instead of `amount`.'
    )

    @field_validator("token")
    @classmethod
    def _token(cls, token: str) -> str:
        if _ADDRESS.match(token):
            return token.lower()
        if not _SYMBOL.match(token):
            raise ValueError("must be a token symbol (USDT) or a 0x-prefixed 20-byte hex address")
        return token.upper()

    @field_validator("amount")
    @classmethod
    def _amount(cls, amount: str | None) -> str | None:
        if amount is None:
            return None
        if not amount.isascii() or not amount.isdigit() or not 0 < int(amount) <= MAX_UINT256:
            raise ValueError("must be a positive whole number of base units, as a decimal string")
        return str(int(amount))

    @field_validator("units")
    @classmethod
    def _units(cls, units: str | None) -> str | None:
        if units is not None and not _UNITS.match(units):
            raise ValueError('must be a positive decimal number of whole tokens, such as "10" or "9.99"')
        return units

    @model_validator(mode="after")
    def _one_amount(self) -> PriceIn:
        if (self.amount is None) == (self.units is None):
            raise ValueError("give the price either in base units (amount) or in whole tokens (units)")
        return self

    def resolve(self, pricing: Pricing) -> list[ProductPrice]:
        """The rows this price stands for (not yet tied to a product: `product_id` 0)."""
        if self.token.startswith("0x"):
            chain_id = self.chain_id or pricing.default_chain
            if chain_id not in pricing.chains:
                raise PriceError(f"the shop takes no payments on chain {chain_id}")
            by_address = {ref.address: ref for ref in pricing.chains[chain_id].values()}
            return [self._row(chain_id, self.token, by_address.get(self.token))]
        chains = [self.chain_id] if self.chain_id is not None else list(pricing.chains)
        rows = []
        for chain_id in chains:
            ref = pricing.chains.get(chain_id, {}).get(self.token)
            if ref is not None:
                rows.append(self._row(chain_id, ref.address, ref))
            elif self.chain_id is not None:
                raise PriceError(f"the shop knows no {self.token} on chain {chain_id}")
        if not rows:
            raise PriceError(f"the shop knows no {self.token} on any of its chains")
        return rows

    def _row(self, chain_id: int, token: str, ref: TokenRef | None) -> ProductPrice:
        if self.amount is not None:
            return ProductPrice(product_id=0, chain_id=chain_id, token=token, amount=self.amount)
        assert self.units is not None
        if ref is None:
            raise PriceError(f"the decimals of {token} are unknown: give its price in base units (amount)")
        whole, _, fraction = self.units.partition(".")
        if len(fraction.rstrip("0")) > ref.decimals:
            raise PriceError(f"{self.units} has more decimals than the token's {ref.decimals}")
        amount = int(whole) * 10**ref.decimals + int(fraction.ljust(ref.decimals, "0")[: ref.decimals] or 0)
        if not 0 < amount <= MAX_UINT256:
            raise PriceError(f"{self.units} is not a price the escrow can take")
        return ProductPrice(product_id=0, chain_id=chain_id, token=token, amount=str(amount))


SKU = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=2000)]
LowStockPercent = Annotated[int, Field(ge=0, le=100)]


class ProductIn(BaseModel):
    sku: SKU
    name: Name
    description: Description = ""
    active: bool = True
    low_stock_percent: LowStockPercent = 20
    prices: list[PriceIn] = Field(default_factory=list, max_length=32)


class ProductPatch(BaseModel):
    """Fields left out stay as they are; `prices`, when given, replaces all the product's prices."""

    name: Name | None = None
    description: Description | None = None
    active: bool | None = None
    low_stock_percent: LowStockPercent | None = None
    prices: list[PriceIn] | None = Field(default=None, max_length=32)


class PriceOut(BaseModel):
    chain_id: int
    token: str
    amount: str


class ListedProduct(BaseModel):
    """A product as buyers see it."""

    id: int
    sku: str
    name: str
    description: str
    prices: list[PriceOut]
    stock: StockState


class MerchantProduct(ListedProduct):
    """A product as its merchant sees it: listed or not, with stock figures."""

    active: bool
    low_stock_percent: int
    available: int
    total: int


def _state(level: StockLevel | None) -> StockState:
    if level is None or level.sold_out:
        return StockState.SOLD_OUT
    return StockState.LOW if level.low else StockState.IN_STOCK


def _prices(session: Session, product_ids: list[int]) -> dict[int, list[PriceOut]]:
    prices: dict[int, list[PriceOut]] = {product_id: [] for product_id in product_ids}
    rows = session.exec(
        select(ProductPrice)
        .where(col(ProductPrice.product_id).in_(product_ids))
        .order_by(col(ProductPrice.id))
    )
    for price in rows:
        prices[price.product_id].append(
            PriceOut(chain_id=price.chain_id, token=price.token, amount=price.amount)
        )
    return prices


def _describe(session: Session, products: list[Product]) -> list[MerchantProduct]:
    ids = [product.id for product in products if product.id is not None]
    prices = _prices(session, ids)
    levels = {level.product_id: level for level in stock_levels(session)}
    described = []
    for product in products:
        assert product.id is not None
        level = levels.get(product.id)
        described.append(
            MerchantProduct(
                id=product.id,
                sku=product.sku,
                name=product.name,
                description=product.description,
                prices=prices[product.id],
                stock=_state(level),
                active=product.active,
                low_stock_percent=product.low_stock_percent,
                available=level.available if level else 0,
                total=level.total if level else 0,
            )
        )
    return described


def storefront(session: Session) -> list[ListedProduct]:
    """Listed products with their prices and stock state (never the stock figures themselves)."""
    products = list(session.exec(select(Product).where(col(Product.active)).order_by(col(Product.id))))
    return [ListedProduct.model_validate(p.model_dump()) for p in _describe(session, products)]


def merchant_products(session: Session) -> list[MerchantProduct]:
    return _describe(session, list(session.exec(select(Product).order_by(col(Product.id)))))


def merchant_product(session: Session, product_id: int) -> MerchantProduct:
    product = session.get(Product, product_id)
    if product is None:
        raise ProductNotFoundError(f"no product {product_id}")
    return _describe(session, [product])[0]


def _replace_prices(session: Session, product_id: int, prices: list[PriceIn], pricing: Pricing) -> None:
    rows = [row for price in prices for row in price.resolve(pricing)]
    keys = [(row.chain_id, row.token) for row in rows]
    if len(set(keys)) != len(keys):
        raise CatalogueError("one price per token and chain")
    for old in session.exec(select(ProductPrice).where(ProductPrice.product_id == product_id)):
        session.delete(old)
    session.flush()
    for row in rows:
        row.product_id = product_id
        session.add(row)


def create_product(session: Session, product_in: ProductIn, pricing: Pricing) -> MerchantProduct:
    product = Product.model_validate(product_in.model_dump(exclude={"prices"}))
    session.add(product)
    try:
        session.flush()
        assert product.id is not None
        _replace_prices(session, product.id, product_in.prices, pricing)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise CatalogueError(f"a product with SKU {product_in.sku!r} exists already") from None
    except CatalogueError:
        session.rollback()
        raise
    return merchant_product(session, product.id)


def update_product(
    session: Session, product_id: int, patch: ProductPatch, pricing: Pricing
) -> MerchantProduct:
    product = session.get(Product, product_id)
    if product is None:
        raise ProductNotFoundError(f"no product {product_id}")
    for field, value in patch.model_dump(exclude_unset=True, exclude={"prices"}).items():
        if value is not None:
            setattr(product, field, value)
    session.add(product)
    try:
        if patch.prices is not None:
            _replace_prices(session, product_id, patch.prices, pricing)
        session.commit()
    except CatalogueError:
        session.rollback()
        raise
    return merchant_product(session, product_id)
