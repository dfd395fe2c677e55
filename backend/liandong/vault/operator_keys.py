"""The operator keystore: hot keys the shop generated for the escrow's operator role, sealed by the
master key.

`liandong escrow rotate-operator` generates a key here (`pending`) and prints the owner's
`setOperator` call: the private key is never shown and never stored unsealed, and the owner's key
never comes near the server. Nodes read the escrow's `operator()` and sign with whichever key it
names (`key_for`); `record_operator` marks that key `active` and the one before `retired`, with
conditional writes, so nodes racing to record the same switch agree. Each row is sealed bound to
its chain and address (AES-GCM associated data), so a row copied to another chain or address does
not open; a vault rotation rewraps the rows with the data keys (`rewrap`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from eth_account import Account
from eth_utils.address import to_checksum_address
from sqlalchemy import Connection, insert, select, update
from sqlmodel import Session

from liandong.store.models import utcnow
from liandong.vault.crypto import Keyring
from liandong.vault.tables import OPERATOR_KEYS


class OperatorKeyStatus(enum.StrEnum):
    PENDING = "pending"
    """Generated; the escrow does not name it yet (the owner's `setOperator` is not mined)."""
    ACTIVE = "active"
    RETIRED = "retired"


@dataclass(frozen=True)
class OperatorKeyEntry:
    """A keystore row as the merchant sees it: never the key itself."""

    address: str
    status: OperatorKeyStatus
    created_at: datetime


def _aad(chain_id: int, address: str) -> bytes:
    return b"liandong operator-key chain:%d address:%s" % (chain_id, address.lower().encode())


def generate_operator_key(session: Session, keyring: Keyring, chain_id: int) -> str:
    """A new operator key for `chain_id`, sealed and committed as `pending`: its address."""
    account = Account.create()
    now = utcnow()
    session.connection().execute(
        insert(OPERATOR_KEYS).values(
            chain_id=chain_id,
            address=account.address,
            wrapped_key=keyring.seal(bytes(account.key), _aad(chain_id, account.address)),
            master_key_id=keyring.primary.key_id,
            status=OperatorKeyStatus.PENDING.value,
            created_at=now,
            updated_at=now,
        )
    )
    session.commit()
    return str(account.address)


def key_for(session: Session, keyring: Keyring, chain_id: int, address: str) -> str | None:
    """The private key (0x-hex) of `address` on `chain_id`, if the keystore holds it."""
    stored = to_checksum_address(address)
    row = (
        session.connection()
        .execute(
            select(OPERATOR_KEYS.c.wrapped_key, OPERATOR_KEYS.c.master_key_id).where(
                OPERATOR_KEYS.c.chain_id == chain_id, OPERATOR_KEYS.c.address == stored
            )
        )
        .first()
    )
    if row is None:
        return None
    wrapped, master_key_id = row
    return "0x" + keyring.open(wrapped, master_key_id, _aad(chain_id, stored), f"operator key {stored}").hex()


def record_operator(session: Session, chain_id: int, address: str) -> None:
    """The escrow names `address` as its operator: its row (if any) becomes active, any other
    active one retired. Both writes are conditional on the status they change."""
    connection = session.connection()
    now = utcnow()
    connection.execute(
        update(OPERATOR_KEYS)
        .where(
            OPERATOR_KEYS.c.chain_id == chain_id,
            OPERATOR_KEYS.c.address != address,
            OPERATOR_KEYS.c.status == OperatorKeyStatus.ACTIVE.value,
        )
        .values(status=OperatorKeyStatus.RETIRED.value, updated_at=now)
    )
    connection.execute(
        update(OPERATOR_KEYS)
        .where(
            OPERATOR_KEYS.c.chain_id == chain_id,
            OPERATOR_KEYS.c.address == address,
            OPERATOR_KEYS.c.status.in_([OperatorKeyStatus.PENDING.value, OperatorKeyStatus.RETIRED.value]),
        )
        .values(status=OperatorKeyStatus.ACTIVE.value, updated_at=now)
    )
    session.commit()


def operator_keys(session: Session, chain_id: int) -> list[OperatorKeyEntry]:
    rows = (
        session.connection()
        .execute(
            select(OPERATOR_KEYS.c.address, OPERATOR_KEYS.c.status, OPERATOR_KEYS.c.created_at)
            .where(OPERATOR_KEYS.c.chain_id == chain_id)
            .order_by(OPERATOR_KEYS.c.id)
        )
        .all()
    )
    return [
        OperatorKeyEntry(address, OperatorKeyStatus(status), created) for address, status, created in rows
    ]


def rewrap(connection: Connection, ring: Keyring) -> int:
    """Rewraps every operator key not sealed by `ring.primary` with it (part of the caller's
    transaction, in a vault rotation); returns how many."""
    rows = connection.execute(
        select(
            OPERATOR_KEYS.c.id,
            OPERATOR_KEYS.c.chain_id,
            OPERATOR_KEYS.c.address,
            OPERATOR_KEYS.c.wrapped_key,
            OPERATOR_KEYS.c.master_key_id,
        ).where(OPERATOR_KEYS.c.master_key_id != ring.primary.key_id)
    ).all()
    for row_id, chain_id, address, wrapped, master_key_id in rows:
        aad = _aad(chain_id, address)
        secret = ring.open(wrapped, master_key_id, aad, f"operator key {address}")
        connection.execute(
            update(OPERATOR_KEYS)
            .where(OPERATOR_KEYS.c.id == row_id)
            .values(wrapped_key=ring.seal(secret, aad), master_key_id=ring.primary.key_id)
        )
    return len(rows)
