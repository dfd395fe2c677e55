"""The vault as the rest of the shop sees it: encrypt and decrypt card keys by product."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import inspect
from sqlmodel import Session, select

from liandong.store.models import DataKey
from liandong.vault.crypto import Keyring, ProductKey, new_data_key

_CREATED = "liandong.vault.created_data_keys"
"""`Session.info` entry: data keys this session created, which it may not have committed yet."""


class Vault:
    """Hands out products' data keys, creating each on first use, and keeps the unwrapped keys in
    memory (a data key never changes, not even when the master key rotates).

    A key created in a session is remembered by that session only, and cached once read back from
    the database: were it cached at once and the transaction rolled back, later card keys would be
    encrypted with a key the database lacks.

    `reload_keyring`, when given, rereads the master keys before wrapping a new data key (so a node
    never wraps with a key that a rotation has retired) and when a row names an unknown master key
    (so a node keeps working after another node rotated the key).
    """

    def __init__(self, keyring: Keyring, reload_keyring: Callable[[], Keyring] | None = None) -> None:
        self.keyring = keyring
        self._reload_keyring = reload_keyring
        self._keys: dict[int, ProductKey] = {}

    def data_key(self, session: Session, product_id: int) -> ProductKey:
        key = self._keys.get(product_id) or _created_in(session, product_id)
        if key is not None:
            return key
        row = session.exec(select(DataKey).where(DataKey.product_id == product_id)).first()
        if row is None:
            return self._create(session, product_id)
        if self._reload_keyring is not None and row.master_key_id not in self.keyring.key_ids():
            self.keyring = self._reload_keyring()
        key = ProductKey(product_id, self.keyring.unwrap(product_id, row.wrapped_key, row.master_key_id))
        self._keys[product_id] = key
        return key

    def _create(self, session: Session, product_id: int) -> ProductKey:
        if self._reload_keyring is not None:
            self.keyring = self._reload_keyring()
        secret = new_data_key()
        row = DataKey(
            product_id=product_id,
            wrapped_key=self.keyring.wrap(product_id, secret),
            master_key_id=self.keyring.primary.key_id,
        )
        session.add(row)
        session.flush()
        key = ProductKey(product_id, secret)
        session.info.setdefault(_CREATED, {})[product_id] = (row, key)
        return key

    def encrypt(self, session: Session, product_id: int, plaintext: str) -> tuple[bytes, str]:
        """The ciphertext to store and the fingerprint that refuses a duplicate of the key."""
        key = self.data_key(session, product_id)
        return key.encrypt(plaintext), key.fingerprint(plaintext)

    def decrypt(self, session: Session, product_id: int, ciphertext: bytes) -> str:
        return self.data_key(session, product_id).decrypt(ciphertext)


def _created_in(session: Session, product_id: int) -> ProductKey | None:
    """The data key this session created for the product, unless its transaction rolled back (which
    expunges the row: it is then no longer persistent)."""
    created: dict[int, tuple[DataKey, ProductKey]] = session.info.get(_CREATED, {})
    entry = created.get(product_id)
    if entry is None:
        return None
    row, key = entry
    if inspect(row).persistent:
        return key
    del created[product_id]
    return None
