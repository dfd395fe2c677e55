"""The demo shop `liandong up` fills an empty local shop with: a catalogue with keys, a login.

Only an empty shop is filled (no products: the catalogue; no merchant: a login with a generated
password, shown once), so a restart, or a shop with real data, is left as it is.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, func, select

from liandong.chain.quotes import NATIVE_COIN
from liandong.services import catalogue
from liandong.services.merchant_auth import create_merchant
from liandong.store.models import Merchant, Product
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault

DEMO_MERCHANT = "merchant"
KEYS_PER_PRODUCT = 200
ONE_COIN = 10**18
DEMO_TOKENS = ("DUSD",)
"""The demo deployment's token (`devtools/deploy.py`), 6 decimals like USDT and USDC."""


@dataclass(frozen=True)
class DemoProduct:
    sku: str
    name: str
    description: str
    native_price: int
    dollar_price: int


DEMO_PRODUCTS = (
    DemoProduct(
        "STEAM-100",
        "Steam 钱包充值卡 ¥100 / Steam wallet ¥100",
        "Steam 钱包卡密 · gift code",
        ONE_COIN // 100,
        14,
    ),
    DemoProduct("OFFICE-365", "Office 365 家庭版 1 年 / 1 year", "激活码 · licence key", ONE_COIN // 50, 29),
    DemoProduct("VPN-30D", "VPN 30 天 / 30 days", "账号密码 · account credentials", ONE_COIN // 200, 5),
)


def _demo_keys(sku: str) -> bytes:
    return "\n".join(f"{sku}-{secrets.token_hex(8).upper()}" for _ in range(KEYS_PER_PRODUCT)).encode()


def seed_demo_shop(engine: Engine, vault: Vault, pricing: catalogue.Pricing) -> str | None:
    """Adds the demo catalogue and a merchant login to a shop that has neither; returns the login's
    generated password (shown once), or None when the shop already had a merchant."""
    with Session(engine) as session:
        if session.exec(select(func.count()).select_from(Product)).one() == 0:
            _add_catalogue(session, vault, pricing)
        if session.exec(select(func.count()).select_from(Merchant)).one():
            return None
        password = secrets.token_urlsafe(12)
        create_merchant(session, DEMO_MERCHANT, password)
        return password


def _add_catalogue(session: Session, vault: Vault, pricing: catalogue.Pricing) -> None:
    """Each product priced on every chain of the shop: in its coin, and in each demo token by
    symbol ("14 DUSD"), which the shop resolves on each chain."""
    for demo in DEMO_PRODUCTS:
        prices = [
            catalogue.PriceIn(chain_id=chain_id, token=NATIVE_COIN, amount=str(demo.native_price))
            for chain_id in pricing.chains
        ]
        prices += [catalogue.PriceIn(token=symbol, units=str(demo.dollar_price)) for symbol in DEMO_TOKENS]
        product = catalogue.create_product(
            session,
            catalogue.ProductIn(sku=demo.sku, name=demo.name, description=demo.description, prices=prices),
            pricing,
        )
        import_keys(session, vault, product.id, f"{demo.sku}.txt", _demo_keys(demo.sku), "txt")
