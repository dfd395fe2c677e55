"""The vault tests' product, keyring and vault (the database comes from tests/conftest.py)."""

from __future__ import annotations

import pytest
from liandong.store.models import Product
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.service import Vault
from sqlmodel import Session


def add_product(session: Session, sku: str) -> int:
    """Adds a product and leaves the session idle: reading `product.id` after the commit would
    begin a new transaction, which on SQLite (BEGIN IMMEDIATE) blocks the test's other sessions."""
    product = Product(sku=sku, name=f"Product {sku}")
    session.add(product)
    session.flush()
    assert product.id is not None
    product_id = product.id
    session.commit()
    return product_id


@pytest.fixture
def product_id(session: Session) -> int:
    return add_product(session, "GAME-KEY")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(MasterKey.generate())


@pytest.fixture
def vault(keyring: Keyring) -> Vault:
    return Vault(keyring)
