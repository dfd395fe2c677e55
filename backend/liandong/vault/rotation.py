"""Vault rotation: a new master key, a new data key per product, the stock re-encrypted online.

`rotate_vault` (what `liandong vault rotate` runs):

1. finishes what an interrupted rotation left: data keys still wrapped by the previous master key
   are rewrapped, card keys of a retired generation are re-encrypted;
2. writes a new master key to the key file, the current one to `<file>.previous` (atomically, in
   that order), and rewraps every data key and operator key (`vault/operator_keys.py`) with it;
3. gives each product a new data key generation (one short transaction per product: the old key
   is kept, wrapped by the new master key, in `retired_data_key`);
4. re-encrypts the card keys, `batch_size` a transaction, with new fingerprints: the nodes keep
   delivering meanwhile (they decrypt with either generation, and reread the product's keys when
   one fails) and imports land in the new generation (see `vault/importer.py`);
5. deletes the retired generations once no card key uses them;
6. removes `<file>.previous` once every live node (`vault_node`, written every few seconds by each
   node after it rereads its keys) uses the new master key.

After step 5 nothing in the database is wrapped by the previous master key, nor encrypted by a data
key it wrapped: that key, leaked, opens nothing in a later dump.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlmodel import Session

from liandong.core.config import Settings
from liandong.core.errors import ConflictError
from liandong.store.models import as_utc, utcnow
from liandong.vault import operator_keys
from liandong.vault.crypto import (
    Keyring,
    MasterKey,
    VaultError,
    load_keyring,
    new_data_key,
    previous_key_file,
    write_key_file,
)
from liandong.vault.service import Vault
from liandong.vault.tables import CARD_KEYS, DATA_KEYS, RETIRED_DATA_KEYS, VAULT_NODES

ENV_KEY_REFUSAL = """\
The master key comes from LIANDONG_MASTER_KEY, so `liandong vault rotate` cannot replace it: it
lives in your secret store, not in a file this command may write. To rotate it, move it to a file
first, then rotate there:

  1. write the current key to a file only the shop's user can read (mode 0600), e.g.
     printf '%s\\n' "$LIANDONG_MASTER_KEY" > .liandong/master.key && chmod 600 .liandong/master.key
  2. unset LIANDONG_MASTER_KEY (set LIANDONG_MASTER_KEY_FILE if the file is elsewhere) on every node,
  3. run `liandong vault rotate` again,
  4. if you want the key back in the secret store, put the new key (the file's content) there and
     delete the file once every node runs with the new key."""

REENCRYPT_BATCH = 500
"""Card keys re-encrypted per transaction: milliseconds of work, so a write lock is never long."""
LIVE_NODE_SECONDS = 10.0
"""A node that has not acknowledged its master key for this long is taken for stopped."""
ACKNOWLEDGE_SECONDS = 2.0
"""How often each node rereads its master keys and acknowledges the one it uses."""

Progress = Callable[[str, int, int], None]
"""Hears (stage, done, total): "re-encrypting" card keys."""


class RotationRefusedError(ConflictError):
    """The rotation cannot be done here; the message tells the operator what to do instead."""


@dataclass
class RotationResult:
    rewrapped: int
    """Data keys (current and retired) rewrapped with the new master key."""
    new_key_id: str
    previous_key_id: str
    products: int = 0
    """Products given a new data key generation."""
    reencrypted: int = 0
    """Card keys re-encrypted with a new data key."""
    previous_removed: bool = False
    """Whether `<key file>.previous` is gone (every live node uses the new master key)."""
    lagging_nodes: list[str] = field(default_factory=list)
    """Live nodes still on the previous master key when the wait ended."""


def rotate_master_key(session: Session, keyring: Keyring, new_key: MasterKey) -> int:
    """Rewraps every data key (current and retired) and operator key not yet wrapped by `new_key`
    with it, in one transaction, and returns how many it rewrapped. Unwraps with `keyring` or
    `new_key`, so it can finish a rotation that stopped half-way. The keys themselves do not change."""
    ring = Keyring(new_key, (keyring.primary, *keyring.previous))
    connection = session.connection()
    try:
        count = 0
        for table in (DATA_KEYS, RETIRED_DATA_KEYS):
            rows = connection.execute(
                select(table.c.id, table.c.product_id, table.c.wrapped_key, table.c.master_key_id).where(
                    table.c.master_key_id != new_key.key_id
                )
            ).all()
            for row_id, product_id, wrapped, master_key_id in rows:
                secret = ring.unwrap(product_id, wrapped, master_key_id)
                connection.execute(
                    update(table)
                    .where(table.c.id == row_id)
                    .values(wrapped_key=ring.wrap(product_id, secret), master_key_id=new_key.key_id)
                )
            count += len(rows)
        count += operator_keys.rewrap(connection, ring)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return count


def next_generation(session: Session, ring: Keyring, product_id: int) -> int:
    """Retires the product's data key (kept, wrapped by `ring.primary`) and gives it a new one, in
    one transaction; returns the new generation. The row lock waits for imports storing under the
    old generation (they hold it `FOR SHARE`), so none can commit under it afterwards."""
    connection = session.connection()
    try:
        row = connection.execute(
            select(DATA_KEYS.c.wrapped_key, DATA_KEYS.c.master_key_id, DATA_KEYS.c.generation)
            .where(DATA_KEYS.c.product_id == product_id)
            .with_for_update()
        ).one()
        wrapped, master_key_id, generation = row
        old_secret = ring.unwrap(product_id, wrapped, master_key_id)
        connection.execute(
            insert(RETIRED_DATA_KEYS).values(
                product_id=product_id,
                generation=generation,
                wrapped_key=ring.wrap(product_id, old_secret),
                master_key_id=ring.primary.key_id,
            )
        )
        connection.execute(
            update(DATA_KEYS)
            .where(DATA_KEYS.c.product_id == product_id)
            .values(
                wrapped_key=ring.wrap(product_id, new_data_key()),
                master_key_id=ring.primary.key_id,
                generation=generation + 1,
            )
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return int(generation) + 1


def reencrypt_product(
    engine: Engine, vault: Vault, product_id: int, batch_size: int = REENCRYPT_BATCH
) -> int:
    """Re-encrypts the product's card keys of retired generations with its current data key (new
    ciphertext and fingerprint), `batch_size` per transaction; then deletes the retired generations
    in a transaction that finds none of them still used. Returns how many card keys it re-encrypted."""
    done = 0
    while True:
        with Session(engine) as session:
            connection = session.connection()
            current = vault.current_data_key(session, product_id)
            rows = connection.execute(
                select(CARD_KEYS.c.id, CARD_KEYS.c.ciphertext, CARD_KEYS.c.key_generation)
                .where(
                    CARD_KEYS.c.product_id == product_id,
                    CARD_KEYS.c.key_generation != current.generation,
                )
                .order_by(CARD_KEYS.c.id)
                .limit(batch_size)
            ).all()
            if not rows:
                connection.execute(
                    RETIRED_DATA_KEYS.delete().where(RETIRED_DATA_KEYS.c.product_id == product_id)
                )
                session.commit()
                return done
            retired = vault.retired_keys(product_id)
            changes = []
            for key_id, ciphertext, generation in rows:
                old = retired.get(int(generation))
                if old is None:
                    raise VaultError(f"card key {key_id} is of generation {generation}, which is not known")
                plaintext = old.decrypt(ciphertext)
                changes.append(
                    {
                        "key_id": key_id,
                        "old_generation": generation,
                        "new_ciphertext": current.encrypt(plaintext),
                        "new_fingerprint": current.fingerprint(plaintext),
                    }
                )
            connection.execute(
                update(CARD_KEYS)
                .where(
                    CARD_KEYS.c.id == bindparam("key_id"),
                    CARD_KEYS.c.key_generation == bindparam("old_generation"),
                )
                .values(
                    ciphertext=bindparam("new_ciphertext"),
                    fingerprint=bindparam("new_fingerprint"),
                    key_generation=current.generation,
                ),
                changes,
            )
            session.commit()
            done += len(changes)


def _products_with_keys(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return [int(p) for p in session.connection().execute(select(DATA_KEYS.c.product_id)).scalars()]


def _products_mid_rotation(engine: Engine) -> list[int]:
    with Session(engine) as session:
        retired = select(RETIRED_DATA_KEYS.c.product_id).distinct()
        return [int(p) for p in session.connection().execute(retired).scalars()]


def live_nodes(engine: Engine, within: float = LIVE_NODE_SECONDS) -> dict[str, str]:
    """Nodes that acknowledged their master key in the last `within` seconds → its id."""
    cutoff = utcnow() - timedelta(seconds=within)
    with Session(engine) as session:
        rows = (
            session.connection()
            .execute(select(VAULT_NODES.c.node_id, VAULT_NODES.c.master_key_id, VAULT_NODES.c.seen_at))
            .all()
        )
    return {node: key_id for node, key_id, seen_at in rows if as_utc(seen_at) >= cutoff}


def retire_previous_key(
    settings: Settings, engine: Engine, wait_seconds: float, poll: float = 0.25
) -> tuple[bool, list[str]]:
    """Removes `<key file>.previous` once every live node reports the key file's current key, or
    gives up after `wait_seconds`: (removed, the nodes still on another key)."""
    path = settings.resolved_master_key_file
    current = load_keyring(settings).primary.key_id
    deadline = time.monotonic() + wait_seconds
    while True:
        lagging = sorted(node for node, key_id in live_nodes(engine).items() if key_id != current)
        if not lagging:
            # A node that read the key files just before the rotation wrote them may have wrapped a
            # new product's data key with the old key since: rewrap it while the old key is here.
            keyring = load_keyring(settings)
            with Session(engine) as session:
                rotate_master_key(session, keyring, keyring.primary)
            previous_key_file(path).unlink(missing_ok=True)
            return True, []
        if time.monotonic() >= deadline:
            return False, lagging
        time.sleep(poll)


def rotate_vault(
    settings: Settings,
    engine: Engine,
    *,
    batch_size: int = REENCRYPT_BATCH,
    wait_seconds: float = 30.0,
    progress: Progress | None = None,
) -> RotationResult:
    """The whole rotation (see the module's notes); safe to run again after any interruption."""
    if settings.master_key:
        raise RotationRefusedError(ENV_KEY_REFUSAL)
    report = progress or (lambda _stage, _done, _total: None)
    keyring = load_keyring(settings)
    with Session(engine) as session:  # 1. what an interrupted rotation left
        rotate_master_key(session, keyring, keyring.primary)
    leftover = Vault(keyring)
    for product_id in _products_mid_rotation(engine):
        reencrypt_product(engine, leftover, product_id, batch_size)

    new_key = MasterKey.generate()  # 2. the files, then the wrapping
    path = settings.resolved_master_key_file
    write_key_file(previous_key_file(path), keyring.primary)
    write_key_file(path, new_key)
    ring = Keyring(new_key, (keyring.primary, *keyring.previous))
    with Session(engine) as session:
        rewrapped = rotate_master_key(session, keyring, new_key)
    result = RotationResult(rewrapped, new_key.key_id, keyring.primary.key_id)

    products = _products_with_keys(engine)  # 3. a new data key per product
    for product_id in products:
        with Session(engine) as session:
            next_generation(session, ring, product_id)
    result.products = len(products)

    with Session(engine) as session:
        total = int(session.connection().execute(select(func.count()).select_from(CARD_KEYS)).scalar() or 0)
    vault = Vault(Keyring(new_key))  # 4 and 5: the stock, under the new keys only
    report("re-encrypting", 0, total)
    for product_id in products:
        result.reencrypted += reencrypt_product(engine, vault, product_id, batch_size)
        report("re-encrypting", result.reencrypted, total)

    result.previous_removed, result.lagging_nodes = retire_previous_key(settings, engine, wait_seconds)
    return result
