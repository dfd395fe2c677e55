"""The vault tests' product, keyring and vault (the database comes from tests/conftest.py)."""

from __future__ import annotations

import contextlib

import pytest
from liandong.store.models import Product
from liandong.vault.crypto import Keyring, MasterKey, ProductKey, VaultError
from liandong.vault.service import Vault
from liandong.vault.tables import CARD_KEYS, DATA_KEYS, RETIRED_DATA_KEYS
from sqlmodel import Session, select


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


def opens_anything(master: MasterKey, session: Session, earlier: Session | None = None) -> bool:
    """Whether `master` unwraps any data key in the database (current or retired), or any of those
    data keys decrypts any card key: what a leaked master key plus a dump of the database give.
    With `earlier` (a dump from before a rotation), the data keys `master` unwraps there are tried
    on the card keys of `session` too."""
    data_keys = []
    for dump in (session,) if earlier is None else (session, earlier):
        for table in (DATA_KEYS, RETIRED_DATA_KEYS):
            for product_id, blob in dump.connection().execute(
                select(table.c.product_id, table.c.wrapped_key)
            ):
                with contextlib.suppress(VaultError):
                    secret = Keyring(master).unwrap(product_id, bytes(blob), master.key_id)
                    data_keys.append(ProductKey(product_id, secret))
    if data_keys and earlier is None:
        return True
    card_keys = session.connection().execute(select(CARD_KEYS.c.product_id, CARD_KEYS.c.ciphertext)).all()
    for key in data_keys:
        for product_id, ciphertext in card_keys:
            if product_id == key.product_id:
                with contextlib.suppress(VaultError):
                    key.decrypt(bytes(ciphertext))
                    return True
    return False
