"""The primitives: master keys and keyrings, product keys, fingerprints, delivery commitments."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from eth_utils.crypto import keccak
from liandong.core.config import Settings
from liandong.vault.crypto import (
    Keyring,
    MasterKey,
    ProductKey,
    VaultError,
    delivery_commitment,
    load_keyring,
    new_data_key,
    new_salt,
    previous_key_file,
    write_key_file,
)


def test_master_key_id_and_base64_round_trip() -> None:
    key = MasterKey(bytes(range(32)))
    assert key.key_id == "630dcd2966c43366"  # sha256(00 01 … 1f)[:16 hex]
    assert MasterKey.from_base64(key.to_base64()) == key
    assert MasterKey.generate() != MasterKey.generate()
    assert key.secret.hex() not in repr(key)


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_master_key_rejects_bad_text(text: str) -> None:
    with pytest.raises(VaultError):
        MasterKey.from_base64(text)


def test_product_key_round_trip_and_fresh_nonces() -> None:
    key = ProductKey(7, new_data_key())
    first, second = key.encrypt("ABCD-1234-€"), key.encrypt("ABCD-1234-€")
    assert first != second
    assert key.decrypt(first) == key.decrypt(second) == "ABCD-1234-€"


def test_ciphertext_is_bound_to_its_product() -> None:
    data_key = new_data_key()
    ciphertext = ProductKey(1, data_key).encrypt("ABCD-1234")
    with pytest.raises(VaultError):
        ProductKey(2, data_key).decrypt(ciphertext)


def test_wrapped_data_key_is_bound_to_its_product() -> None:
    keyring = Keyring(MasterKey.generate())
    wrapped = keyring.wrap(1, new_data_key())
    with pytest.raises(VaultError):
        keyring.unwrap(2, wrapped, keyring.primary.key_id)


def test_keyring_unwraps_with_previous_keys_and_refuses_unknown_ones() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    data_key = new_data_key()
    wrapped = Keyring(old).wrap(3, data_key)
    assert Keyring(new, (old,)).unwrap(3, wrapped, old.key_id) == data_key
    with pytest.raises(VaultError, match="not known"):
        Keyring(new).unwrap(3, wrapped, old.key_id)


def test_fingerprint_depends_on_key_and_data_key_only() -> None:
    data_key = new_data_key()
    key = ProductKey(1, data_key)
    assert key.fingerprint("ABCD") == ProductKey(1, data_key).fingerprint("ABCD")
    assert key.fingerprint("ABCD") != key.fingerprint("ABCE")
    assert key.fingerprint("ABCD") != ProductKey(1, new_data_key()).fingerprint("ABCD")
    assert len(key.fingerprint("ABCD")) == 64


def test_commitment_matches_hand_computation() -> None:
    order_id, salt = bytes.fromhex("11" * 32), bytes.fromhex("22" * 32)
    keys = ["AAAA-1111", "BBBB-2222"]
    keys_hash = keccak(keccak(b"AAAA-1111") + keccak(b"BBBB-2222"))
    assert delivery_commitment(order_id, salt, keys) == keccak(order_id + salt + keys_hash)
    assert len(delivery_commitment(order_id, salt, keys)) == 32


def test_commitment_changes_with_any_input() -> None:
    order_id, salt = new_salt(), new_salt()
    keys = ["AAAA-1111", "BBBB-2222"]
    base = delivery_commitment(order_id, salt, keys)
    variants = [
        delivery_commitment(new_salt(), salt, keys),
        delivery_commitment(order_id, new_salt(), keys),
        delivery_commitment(order_id, salt, ["AAAA-1111", "BBBB-2223"]),
        delivery_commitment(order_id, salt, ["BBBB-2222", "AAAA-1111"]),
        delivery_commitment(order_id, salt, ["AAAA-1111"]),
        delivery_commitment(order_id, salt, ["AAAA-1111BBBB-2222"]),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_commitment_wants_32_byte_order_id_and_salt() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        delivery_commitment(b"\x01" * 31, new_salt(), ["A"])


def _settings(tmp_path: Path, **overrides: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None, **overrides)  # type: ignore[call-arg]


def test_load_keyring_creates_a_private_key_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LIANDONG_MASTER_KEY", raising=False)
    monkeypatch.delenv("LIANDONG_MASTER_KEY_FILE", raising=False)
    settings = _settings(tmp_path)
    first = load_keyring(settings)
    path = settings.resolved_master_key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(settings) == first
    assert first.previous == ()
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temporary file left


def test_load_keyring_reads_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIANDONG_MASTER_KEY", raising=False)
    settings = _settings(tmp_path, master_key_file=str(tmp_path / "keys" / "m.key"))
    old, new = MasterKey.generate(), MasterKey.generate()
    write_key_file(settings.resolved_master_key_file, new)
    write_key_file(previous_key_file(settings.resolved_master_key_file), old)
    assert load_keyring(settings) == Keyring(new, (old,))
    assert stat.S_IMODE(settings.resolved_master_key_file.stat().st_mode) == 0o600


def test_load_keyring_prefers_the_environment(tmp_path: Path) -> None:
    key = MasterKey.generate()
    settings = _settings(tmp_path, master_key=key.to_base64())
    assert load_keyring(settings) == Keyring(key)
    assert not settings.resolved_master_key_file.exists()
