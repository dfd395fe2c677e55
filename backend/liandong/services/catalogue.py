"""Products and their prices: what the storefront lists and the merchant edits.

The buyer's view (`storefront`) and the merchant's (`merchant_products`, with stock levels) are
read from the same rows here, and products are created and edited only through `ProductIn` and
`ProductPatch`, so the API and the CLI check a product the same way.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from liandong.core.errors import ConflictError, NotFoundError
from liandong.services.orders import MAX_UINT256
from liandong.services.stats import StockLevel, stock_levels
from liandong.store.models import Product, ProductPrice

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class CatalogueError(ConflictError):
    """A product edit that cannot be made (a SKU taken, two prices in one token)."""


class ProductNotFoundError(NotFoundError, CatalogueError):
    """No product has this id."""


class StockState(enum.StrEnum):
    IN_STOCK = "in_stock"
    LOW = "low"
    SOLD_OUT = "sold_out"


class PriceIn(BaseModel):
    token: Annotated[str, Field(description="Token address; 0x000…000 for the chain's native coin.")]
    amount: Annotated[str, Field(description="Price of one unit in the token's base units (decimal).")]

    @field_validator("token")
    @classmethod
    def _address(cls, token: str) -> str:
        if not _ADDRESS.match(token):
            raise ValueError("must be a 0x-prefixed 20-byte hex address")
        return token.lower()

    @field_validator("amount")
    @classmethod
    def _amount(cls, amount: str) -> str:
        if not amount.isascii() or not amount.isdigit() or not 0 < int(amount) <= MAX_UINT256:
            raise ValueError("must be a positive whole number of base units, as a decimal string")
        return str(int(amount))


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
        prices[price.product_id].append(PriceOut(token=price.token, amount=price.amount))
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


def _replace_prices(session: Session, product_id: int, prices: list[PriceIn]) -> None:
    tokens = [price.token for price in prices]
    if len(set(tokens)) != len(tokens):
        raise CatalogueError("one price per token")
    for old in session.exec(select(ProductPrice).where(ProductPrice.product_id == product_id)):
        session.delete(old)
    session.flush()
    for price in prices:
        session.add(ProductPrice(product_id=product_id, token=price.token, amount=price.amount))


def create_product(session: Session, product_in: ProductIn) -> MerchantProduct:
    product = Product.model_validate(product_in.model_dump(exclude={"prices"}))
    session.add(product)
    try:
        session.flush()
        assert product.id is not None
        _replace_prices(session, product.id, product_in.prices)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise CatalogueError(f"a product with SKU {product_in.sku!r} exists already") from None
    except CatalogueError:
        session.rollback()
        raise
    return merchant_product(session, product.id)


def update_product(session: Session, product_id: int, patch: ProductPatch) -> MerchantProduct:
    product = session.get(Product, product_id)
    if product is None:
        raise ProductNotFoundError(f"no product {product_id}")
    for field, value in patch.model_dump(exclude_unset=True, exclude={"prices"}).items():
        if value is not None:
            setattr(product, field, value)
    session.add(product)
    try:
        if patch.prices is not None:
            _replace_prices(session, product_id, patch.prices)
        session.commit()
    except CatalogueError:
        session.rollback()
        raise
    return merchant_product(session, product_id)
