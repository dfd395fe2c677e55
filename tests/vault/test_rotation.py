"""Master-key rotation: data keys rewrapped, ciphertexts and fingerprints untouched."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from liandong.core.config import Settings
from liandong.store.models import CardKey, DataKey, utcnow
from liandong.vault.crypto import (
    Keyring,
    MasterKey,
    VaultError,
    load_keyring,
    previous_key_file,
    read_key_file,
)
from liandong.vault.importer import import_keys
from liandong.vault.rotation import (
    RotationRefusedError,
    next_generation,
    reencrypt_product,
    retire_previous_key,
    rotate_master_key,
    rotate_vault,
)
from liandong.vault.service import Vault
from liandong.vault.tables import CARD_KEYS, RETIRED_DATA_KEYS, VAULT_NODES
from pydantic import SecretStr
from sqlalchemy import Engine, insert
from sqlmodel import Session, select

from .conftest import add_product, opens_anything


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


def _rows(session: Session) -> list[tuple[bytes, str, int]]:
    return [
        (bytes(ciphertext), fingerprint, generation)
        for ciphertext, fingerprint, generation in session.connection().execute(
            select(CARD_KEYS.c.ciphertext, CARD_KEYS.c.fingerprint, CARD_KEYS.c.key_generation).order_by(
                CARD_KEYS.c.id
            )
        )
    ]


def test_rotation_reencrypts_the_stock_and_a_leaked_old_master_key_opens_nothing(
    settings: Settings, engine: Engine, product_id: int
) -> None:
    before = load_keyring(settings)
    running = Vault(before, lambda: load_keyring(settings))  # a node, rereading the key files
    with Session(engine) as session:
        other = add_product(session, "OTHER")
        import_keys(session, running, product_id, "k.txt", b"A\nB\nC\n", "txt")
        import_keys(session, running, other, "k.txt", b"D\nE\n", "txt")
        old_rows = _rows(session)
        assert opens_anything(before.primary, session)

    result = rotate_vault(settings, engine, batch_size=2, wait_seconds=0)

    path = settings.resolved_master_key_file
    new_key = read_key_file(path)
    assert (result.products, result.reencrypted, result.new_key_id) == (2, 5, new_key.key_id)
    assert result.previous_removed  # no node is running
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.key"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with Session(engine) as session:
        new_rows = _rows(session)
        assert {generation for _, _, generation in new_rows} == {2}
        assert not {c for c, _, _ in old_rows} & {c for c, _, _ in new_rows}  # new ciphertexts
        assert not {f for _, f, _ in old_rows} & {f for _, f, _ in new_rows}  # and fingerprints
        assert session.connection().execute(select(RETIRED_DATA_KEYS.c.id)).all() == []
        assert not opens_anything(before.primary, session)  # the leaked old key, a later dump
        assert _decrypt_all(session, Vault(Keyring(new_key)), product_id) == ["A", "B", "C"]
        assert _decrypt_all(session, Vault(Keyring(new_key)), other) == ["D", "E"]
        # The node that cached the old data keys rereads them when a ciphertext no longer opens.
        assert _decrypt_all(session, running, product_id) == ["A", "B", "C"]
    with Session(engine) as session:
        # Fingerprints follow the new data key: the same keys imported again are all duplicates.
        report = import_keys(session, Vault(Keyring(new_key)), product_id, "again.txt", b"A\nB\nC\n", "txt")
        assert report.duplicates_existing == 3


def test_the_previous_key_stays_until_every_live_node_has_reloaded(
    settings: Settings, engine: Engine, product_id: int
) -> None:
    node = Vault(load_keyring(settings), lambda: load_keyring(settings))
    with Session(engine) as session:
        import_keys(session, node, product_id, "k.txt", b"A\n", "txt")
    old_id = node.acknowledge(engine, "node-1")
    # A node that stopped long ago does not count.
    with Session(engine) as session:
        session.connection().execute(
            insert(VAULT_NODES).values(
                node_id="gone", master_key_id=old_id, seen_at=utcnow() - timedelta(hours=1)
            )
        )
        session.commit()

    result = rotate_vault(settings, engine, wait_seconds=0.3)

    previous = previous_key_file(settings.resolved_master_key_file)
    assert (result.previous_removed, result.lagging_nodes) == (False, ["node-1"])
    assert previous.exists()
    assert node.acknowledge(engine, "node-1") == result.new_key_id  # the node reloads the files
    assert retire_previous_key(settings, engine, wait_seconds=1) == (True, [])
    assert not previous.exists()
    with Session(engine) as session:
        assert _decrypt_all(session, node, product_id) == ["A"]


def test_an_import_encrypted_under_a_retired_generation_is_encrypted_again(
    settings: Settings, engine: Engine, product_id: int
) -> None:
    stale = Vault(load_keyring(settings), lambda: load_keyring(settings))
    with Session(engine) as session:
        import_keys(session, stale, product_id, "k.txt", b"A\n", "txt")
        stale.data_key(session, product_id)  # cached: generation 1
        session.commit()
    with Session(engine) as session:
        assert next_generation(session, load_keyring(settings), product_id) == 2

    with Session(engine) as session:
        report = import_keys(session, stale, product_id, "more.txt", b"A\nB\n", "txt")
        assert (report.imported, report.duplicates_existing) == (1, 1)  # A is known under either key
        assert [generation for _, _, generation in _rows(session)] == [1, 2]
    assert reencrypt_product(engine, Vault(load_keyring(settings)), product_id) == 1
    with Session(engine) as session:
        assert [generation for _, _, generation in _rows(session)] == [2, 2]
        assert session.connection().execute(select(RETIRED_DATA_KEYS.c.id)).all() == []
        assert _decrypt_all(session, stale, product_id) == ["A", "B"]


def test_rotate_finishes_an_interrupted_rotation_first(
    settings: Settings, engine: Engine, product_id: int
) -> None:
    first = load_keyring(settings)
    with Session(engine) as session:
        import_keys(session, Vault(first), product_id, "k.txt", b"A\n", "txt")
    # Interrupted rotation: the files were replaced but the database still has the old wrapping.
    path = settings.resolved_master_key_file
    second = MasterKey.generate()
    previous_key_file(path).write_text(first.primary.to_base64())
    path.write_text(second.to_base64())

    result = rotate_vault(settings, engine, wait_seconds=0)

    assert result.previous_key_id == second.key_id
    assert not previous_key_file(path).exists()
    with Session(engine) as session:
        assert session.exec(select(DataKey.master_key_id)).one() == result.new_key_id
        assert _decrypt_all(session, Vault(Keyring(read_key_file(path))), product_id) == ["A"]


def test_rotate_refuses_a_key_from_the_environment(settings: Settings, engine: Engine) -> None:
    settings.master_key = SecretStr(MasterKey.generate().to_base64())
    with pytest.raises(RotationRefusedError, match="LIANDONG_MASTER_KEY"):
        rotate_vault(settings, engine)
    assert not settings.resolved_master_key_file.exists()
