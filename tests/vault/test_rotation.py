"""Master-key rotation: data keys rewrapped, ciphertexts and fingerprints untouched."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from liandong.core.config import Settings
from liandong.store.models import CardKey, DataKey
from liandong.vault.crypto import (
    Keyring,
    MasterKey,
    VaultError,
    load_keyring,
    previous_key_file,
    read_key_file,
)
from liandong.vault.importer import import_keys
from liandong.vault.rotation import RotationRefusedError, rotate_master_key, rotate_master_key_file
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session, select

from .conftest import add_product


def _fingerprints(session: Session) -> list[str]:
    return list(session.exec(select(CardKey.fingerprint).order_by(CardKey.id)))


def _decrypt_all(session: Session, vault: Vault, product_id: int) -> list[str]:
    rows = session.exec(select(CardKey).where(CardKey.product_id == product_id).order_by(CardKey.id))
    return [vault.decrypt(session, product_id, row.ciphertext) for row in rows]


def test_rotation_rewraps_and_keeps_ciphertexts_and_fingerprints(engine: Engine, keyring: Keyring) -> None:
    with Session(engine) as session:
        products = [add_product(session, "P1"), add_product(session, "P2")]
        vault = Vault(keyring)
        for product_id in products:
            import_keys(session, vault, product_id, "k.txt", b"A\nB\nC\n", "txt")
        fingerprints = _fingerprints(session)
        new_key = MasterKey.generate()
        assert rotate_master_key(session, keyring, new_key) == 2
        assert set(session.exec(select(DataKey.master_key_id))) == {new_key.key_id}
        assert _fingerprints(session) == fingerprints
        assert rotate_master_key(session, Keyring(new_key), new_key) == 0

    for rotated in (Keyring(new_key, (keyring.primary,)), Keyring(new_key)):
        with Session(engine) as session:
            vault = Vault(rotated)
            assert _decrypt_all(session, vault, products[0]) == ["A", "B", "C"]
            # Same fingerprints after rotation: re-importing the keys finds them all in stock.
            report = import_keys(session, vault, products[1], "again.txt", b"A\nB\nC\n", "txt")
            assert report.duplicates_existing == 3


def test_old_key_alone_no_longer_unwraps(engine: Engine, product_id: int, keyring: Keyring) -> None:
    with Session(engine) as session:
        import_keys(session, Vault(keyring), product_id, "k.txt", b"A\n", "txt")
        rotate_master_key(session, keyring, MasterKey.generate())
        ciphertext = session.exec(select(CardKey.ciphertext)).one()
    with Session(engine) as session, pytest.raises(VaultError, match="not known here"):
        Vault(keyring).decrypt(session, product_id, ciphertext)


def test_rotation_fails_whole_if_a_data_key_cannot_be_unwrapped(
    engine: Engine, product_id: int, keyring: Keyring
) -> None:
    with Session(engine) as session:
        other = add_product(session, "OTHER")
        Vault(keyring).data_key(session, product_id)
        Vault(Keyring(MasterKey.generate())).data_key(session, other)  # a key this keyring lacks
        session.commit()
        with pytest.raises(VaultError, match="not known here"):
            rotate_master_key(session, keyring, MasterKey.generate())
        assert len(set(session.exec(select(DataKey.master_key_id)))) == 2


@pytest.fixture
def settings(tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("LIANDONG_MASTER_KEY", raising=False)
    monkeypatch.delenv("LIANDONG_MASTER_KEY_FILE", raising=False)
    return Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{db_path}", _env_file=None)  # type: ignore[call-arg]


def test_rotate_key_file(settings: Settings, engine: Engine, product_id: int) -> None:
    before = load_keyring(settings)
    running = Vault(before)  # a node that has been using the product's key since before the rotation
    with Session(engine) as session:
        import_keys(session, running, product_id, "k.txt", b"A\nB\n", "txt")
    with Session(engine) as session:
        assert _decrypt_all(session, running, product_id) == ["A", "B"]

    result = rotate_master_key_file(settings, engine)

    path = settings.resolved_master_key_file
    after = load_keyring(settings)
    assert result.rewrapped == 1
    assert (result.previous_key_id, result.new_key_id) == (before.primary.key_id, after.primary.key_id)
    assert after == Keyring(after.primary, (before.primary,))
    for file in (path, previous_key_file(path)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.key", "master.key.previous"]
    with Session(engine) as session:
        # Nodes started before the rotation keep working: data keys do not change, and a node that
        # had not unwrapped this one yet rereads the key files when it meets the new key id.
        assert _decrypt_all(session, running, product_id) == ["A", "B"]
        assert _decrypt_all(session, Vault(before, lambda: load_keyring(settings)), product_id) == ["A", "B"]
        assert _decrypt_all(session, Vault(after), product_id) == ["A", "B"]
    previous_key_file(path).unlink()
    with Session(engine) as session:
        assert _decrypt_all(session, Vault(load_keyring(settings)), product_id) == ["A", "B"]


def test_rotate_key_file_finishes_an_interrupted_rotation_first(
    settings: Settings, engine: Engine, product_id: int
) -> None:
    first = load_keyring(settings)
    with Session(engine) as session:
        Vault(first).data_key(session, product_id)
        session.commit()
    # Interrupted rotation: the files were replaced but the database still has the old wrapping.
    path = settings.resolved_master_key_file
    second = MasterKey.generate()
    previous_key_file(path).write_text(first.primary.to_base64())
    path.write_text(second.to_base64())

    result = rotate_master_key_file(settings, engine)

    assert read_key_file(previous_key_file(path)) == second
    with Session(engine) as session:
        assert session.exec(select(DataKey.master_key_id)).one() == result.new_key_id
        assert Vault(Keyring(read_key_file(path))).data_key(session, product_id) is not None


def test_rotate_refuses_a_key_from_the_environment(settings: Settings, engine: Engine) -> None:
    settings.master_key = MasterKey.generate().to_base64()
    with pytest.raises(RotationRefusedError, match="LIANDONG_MASTER_KEY"):
        rotate_master_key_file(settings, engine)
    assert not settings.resolved_master_key_file.exists()
