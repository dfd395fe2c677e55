"""The vault over the database: data keys created once, wrapped, cached, and consistent with it."""

from __future__ import annotations

import pytest
from liandong.store.models import DataKey
from liandong.vault.crypto import Keyring, MasterKey, VaultError
from liandong.vault.service import Vault
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from .conftest import add_product


def test_round_trip_through_a_new_vault(engine: Engine, product_id: int, keyring: Keyring) -> None:
    with Session(engine) as session:
        ciphertext, fingerprint = Vault(keyring).encrypt(session, product_id, "ABCD-1234-EFGH")
        session.commit()
    assert b"ABCD-1234" not in ciphertext
    with Session(engine) as session:
        restarted = Vault(keyring)
        assert restarted.decrypt(session, product_id, ciphertext) == "ABCD-1234-EFGH"
        assert restarted.encrypt(session, product_id, "ABCD-1234-EFGH")[1] == fingerprint


def test_one_wrapped_data_key_per_product(session: Session, product_id: int, vault: Vault) -> None:
    other = add_product(session, "OTHER")
    vault.encrypt(session, product_id, "A")
    vault.encrypt(session, product_id, "B")
    vault.encrypt(session, other, "C")
    session.commit()
    rows = session.exec(select(DataKey)).all()
    assert sorted(row.product_id for row in rows) == sorted([product_id, other])
    assert {row.master_key_id for row in rows} == {vault.keyring.primary.key_id}
    assert vault.data_key(session, product_id) is vault.data_key(session, product_id)


def test_ciphertext_of_another_product_does_not_decrypt(
    session: Session, product_id: int, vault: Vault
) -> None:
    other = add_product(session, "OTHER")
    ciphertext, _ = vault.encrypt(session, product_id, "ABCD")
    with pytest.raises(VaultError):
        vault.decrypt(session, other, ciphertext)


def test_rolled_back_data_key_is_forgotten(engine: Engine, product_id: int, vault: Vault) -> None:
    with Session(engine) as session:
        lost = vault.data_key(session, product_id)
        session.rollback()
        kept = vault.data_key(session, product_id)
        assert kept is not lost
        ciphertext = kept.encrypt("ABCD")
        session.commit()
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(DataKey)).one() == 1
        assert Vault(vault.keyring).decrypt(session, product_id, ciphertext) == "ABCD"


def test_reloads_the_keyring_for_an_unknown_master_key(engine: Engine, product_id: int) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    with Session(engine) as session:
        ciphertext, _ = Vault(Keyring(new)).encrypt(session, product_id, "ABCD")
        session.commit()
    reloads: list[int] = []

    def reload() -> Keyring:
        reloads.append(1)
        return Keyring(new, (old,))

    stale = Vault(Keyring(old), reload)
    with Session(engine) as session:
        assert stale.decrypt(session, product_id, ciphertext) == "ABCD"
    assert reloads == [1]


def test_reloads_the_keyring_before_wrapping_a_new_data_key(session: Session, product_id: int) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    Vault(Keyring(old), lambda: Keyring(new, (old,))).data_key(session, product_id)
    session.commit()
    assert session.exec(select(DataKey.master_key_id)).one() == new.key_id
