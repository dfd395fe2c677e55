"""The vault as the rest of the shop sees it: encrypt and decrypt card keys by product, and read an
order's delivered keys back in line order.

One object per process caches the unwrapped data keys, so card keys are decrypted without a
database read each; the caching rules around rotation are in `Vault`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, insert, inspect, select, update
from sqlmodel import Session, col

from liandong.store.models import CardKey, DataKey, Delivery, ShopOrder, utcnow
from liandong.vault.crypto import Keyring, ProductKey, VaultError, new_data_key
from liandong.vault.tables import DATA_KEYS, RETIRED_DATA_KEYS, VAULT_NODES

_CREATED = "liandong.vault.created_data_keys"
"""`Session.info` entry: data keys this session created, which it may not have committed yet."""


class Vault:
    """Hands out products' data keys, creating each on first use, and keeps the unwrapped keys in
    memory.

    A key created in a session is remembered by that session only, and cached once read back from
    the database: were it cached at once and the transaction rolled back, later card keys would be
    encrypted with a key the database lacks.

    A rotation (`vault/rotation.py`) gives a product a new data key generation and re-encrypts its
    card keys: `decrypt` then tries the generations it knows and, failing, rereads the product's
    keys once; `current_data_key` (what imports encrypt with) checks the generation first.

    `reload_keyring`, when given, rereads the master keys before wrapping a new data key (so a node
    never wraps with a key that a rotation has retired), when a row names an unknown master key (so
    a node keeps working after another node rotated the key), and in `acknowledge`.
    """

    def __init__(self, keyring: Keyring, reload_keyring: Callable[[], Keyring] | None = None) -> None:
        self.keyring = keyring
        self._reload_keyring = reload_keyring
        self._keys: dict[int, ProductKey] = {}
        self._retired: dict[int, dict[int, ProductKey]] = {}

    def data_key(self, session: Session, product_id: int) -> ProductKey:
        """The product's data key as this vault last read it (created on first use)."""
        key = self._keys.get(product_id) or _created_in(session, product_id)
        if key is not None:
            return key
        return self._load(session, product_id)

    def current_data_key(self, session: Session, product_id: int) -> ProductKey:
        """The product's current data key, rereading it if a rotation moved to a new generation."""
        generation = (
            session.connection()
            .execute(select(DATA_KEYS.c.generation).where(DATA_KEYS.c.product_id == product_id))
            .scalar()
        )
        key = self._keys.get(product_id) or _created_in(session, product_id)
        if key is not None and (generation is None or key.generation == generation):
            return key
        return self._load(session, product_id)

    def retired_keys(self, product_id: int) -> dict[int, ProductKey]:
        """The previous generations of the product's data key still in the database when last read."""
        return dict(self._retired.get(product_id, {}))

    def live_keys(self, session: Session, product_id: int) -> list[ProductKey]:
        """The current key first, then the retired ones: every key a card key of the product may be
        encrypted (and fingerprinted) with at the moment."""
        current = self.current_data_key(session, product_id)
        return [current, *(key for key in self.retired_keys(product_id).values() if key is not current)]

    def _unwrap(self, product_id: int, wrapped_key: bytes, master_key_id: str) -> bytes:
        if self._reload_keyring is not None and master_key_id not in self.keyring.key_ids():
            self.keyring = self._reload_keyring()
        return self.keyring.unwrap(product_id, wrapped_key, master_key_id)

    def _load(self, session: Session, product_id: int) -> ProductKey:
        connection = session.connection()
        row = connection.execute(
            select(DATA_KEYS.c.wrapped_key, DATA_KEYS.c.master_key_id, DATA_KEYS.c.generation).where(
                DATA_KEYS.c.product_id == product_id
            )
        ).first()
        if row is None:
            return self._create(session, product_id)
        retired = connection.execute(
            select(
                RETIRED_DATA_KEYS.c.generation,
                RETIRED_DATA_KEYS.c.wrapped_key,
                RETIRED_DATA_KEYS.c.master_key_id,
            ).where(RETIRED_DATA_KEYS.c.product_id == product_id)
        ).all()
        key = ProductKey(product_id, self._unwrap(product_id, row[0], row[1]), int(row[2]))
        self._keys[product_id] = key
        self._retired[product_id] = {
            int(generation): ProductKey(
                product_id, self._unwrap(product_id, wrapped, master), int(generation)
            )
            for generation, wrapped, master in retired
        }
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
        key = self.current_data_key(session, product_id)
        return key.encrypt(plaintext), key.fingerprint(plaintext)

    def decrypt(self, session: Session, product_id: int, ciphertext: bytes) -> str:
        """Tries the product's keys this vault knows (AES-GCM tells a wrong key for certain), then
        rereads them once: a rotation may have re-encrypted the card key since they were read."""
        current = self.data_key(session, product_id)
        for attempt in range(2):
            keys = [current, *self.retired_keys(product_id).values()]
            for key in keys:
                try:
                    return key.decrypt(ciphertext)
                except VaultError:
                    continue
            if attempt == 0:
                current = self._load(session, product_id)
        raise VaultError(f"a card key does not decrypt for product {product_id}")

    def delivered_keys(self, session: Session, order: ShopOrder) -> list[str]:
        """The card keys handed out to `order`, decrypted, in line order (`Delivery.line_no`): the
        order its commitment was computed in, so the buyer, the audit and the tests all read them
        so."""
        ciphertexts = (
            session.connection()
            .execute(
                select(col(CardKey.ciphertext))
                .join(Delivery, col(Delivery.card_key_id) == col(CardKey.id))
                .where(col(Delivery.order_id) == order.id)
                .order_by(col(Delivery.line_no))
            )
            .scalars()
            .all()
        )
        return [self.decrypt(session, order.product_id, ciphertext) for ciphertext in ciphertexts]

    def acknowledge(self, engine: Engine, node_id: str) -> str:
        """Rereads the master keys and records which one this node uses now (`vault_node`), so that
        a rotation removes the previous key only once every live node has moved on. Returns its id."""
        if self._reload_keyring is not None:
            self.keyring = self._reload_keyring()
        key_id = self.keyring.primary.key_id
        with Session(engine) as session:
            connection = session.connection()
            values = {"master_key_id": key_id, "seen_at": utcnow()}
            changed = connection.execute(
                update(VAULT_NODES).where(VAULT_NODES.c.node_id == node_id).values(**values)
            )
            if changed.rowcount == 0:
                connection.execute(insert(VAULT_NODES).values(node_id=node_id[:200], **values))
            session.commit()
        return key_id

    def forget_node(self, engine: Engine, node_id: str) -> None:
        """A node that stops cleanly no longer counts as live."""
        with Session(engine) as session:
            session.connection().execute(VAULT_NODES.delete().where(VAULT_NODES.c.node_id == node_id))
            session.commit()


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
