"""A fresh, migrated SQLite database per test, copied from one migrated once (migrating is slow)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from liandong.store.db import make_engine, migrate
from liandong.store.models import Product
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    path = tmp_path / "shop.db"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{db_path}")
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


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
