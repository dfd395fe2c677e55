"""Master-key rotation: rewrap the data keys, never re-encrypt the card keys.

Data keys do not change, so a rotation rewrites one small row per product, and nodes that still
hold the old master key keep decrypting with the data keys they already unwrapped (and, given the
`.previous` file, unwrap the others too).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, select

from liandong.core.config import Settings
from liandong.store.models import DataKey
from liandong.vault.crypto import Keyring, MasterKey, load_keyring, previous_key_file, write_key_file

ENV_KEY_REFUSAL = """\
The master key comes from LIANDONG_MASTER_KEY, so `liandong vault rotate` cannot replace it: it
lives in your secret store, not in a file this command may write. To rotate it, move it to a file
first, then rotate there:

  1. write the current key to a file only the shop's user can read (mode 0600), e.g.
     printf '%s\\n' "$LIANDONG_MASTER_KEY" > .liandong/master.key && chmod 600 .liandong/master.key
  2. unset LIANDONG_MASTER_KEY (set LIANDONG_MASTER_KEY_FILE if the file is elsewhere),
  3. run `liandong vault rotate` again,
  4. if you want the key back in the secret store, put the new key (the file's content) there and
     delete both the file and its `.previous` once every node runs with the new key."""


class RotationRefusedError(Exception):
    """The rotation cannot be done here; the message tells the operator what to do instead."""


@dataclass(frozen=True)
class RotationResult:
    rewrapped: int
    new_key_id: str
    previous_key_id: str


def rotate_master_key(session: Session, keyring: Keyring, new_key: MasterKey) -> int:
    """Rewraps every data key not yet wrapped by `new_key` with it, in one transaction, and returns
    how many it rewrapped. Unwraps with `keyring` or `new_key`, so it can finish a rotation that
    stopped half-way."""
    ring = Keyring(new_key, (keyring.primary, *keyring.previous))
    try:
        rows = session.exec(select(DataKey).where(DataKey.master_key_id != new_key.key_id)).all()
        for row in rows:
            secret = ring.unwrap(row.product_id, row.wrapped_key, row.master_key_id)
            row.wrapped_key = ring.wrap(row.product_id, secret)
            row.master_key_id = new_key.key_id
            session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return len(rows)


def rotate_master_key_file(settings: Settings, engine: Engine) -> RotationResult:
    """Replaces the key file's key with a new one, keeps the old one in `<file>.previous`, and
    rewraps the database's data keys.

    The order makes every interruption safe: data keys still wrapped by the old `.previous` key are
    first rewrapped with the current key (so overwriting `.previous` loses nothing), then the files
    change (each atomically, `.previous` first), then the database. A crash before the last step
    leaves rows wrapped by the key now in `.previous`, which every node can still unwrap, and which
    the next run rewraps first."""
    if settings.master_key:
        raise RotationRefusedError(ENV_KEY_REFUSAL)
    keyring = load_keyring(settings)
    with Session(engine) as session:
        rotate_master_key(session, keyring, keyring.primary)
    new_key = MasterKey.generate()
    path = settings.resolved_master_key_file
    write_key_file(previous_key_file(path), keyring.primary)
    write_key_file(path, new_key)
    with Session(engine) as session:
        rewrapped = rotate_master_key(session, keyring, new_key)
    return RotationResult(rewrapped, new_key.key_id, keyring.primary.key_id)
