"""The same migrations and the same store code on PostgreSQL (the machine's server, a database of
the test's own, dropped afterwards)."""

from __future__ import annotations

from liandong.store.db import make_engine, migrate
from liandong.store.models import CardKey
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault
from sqlalchemy import inspect
from sqlmodel import Session, SQLModel, select

from tests.vault.conftest import add_product


def test_migrations_build_every_table_and_rerun_as_a_no_op(postgres_url: str) -> None:
    migrate(postgres_url)
    migrate(postgres_url)
    engine = make_engine(postgres_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(SQLModel.metadata.tables) <= tables


def test_key_import_and_decrypt_on_postgres(postgres_url: str) -> None:
    migrate(postgres_url)
    engine = make_engine(postgres_url)
    vault = Vault(Keyring(MasterKey.generate(), ()))
    with Session(engine) as session:
        product_id = add_product(session, "pg")
        report = import_keys(session, vault, product_id, "keys.txt", b"PG-1\nPG-2\nPG-1\n", "txt")
        assert (report.imported, report.duplicates_in_file) == (2, 1)
        keys = session.exec(select(CardKey).where(CardKey.product_id == product_id)).all()
        assert sorted(vault.decrypt(session, product_id, key.ciphertext) for key in keys) == ["PG-1", "PG-2"]
    engine.dispose()
