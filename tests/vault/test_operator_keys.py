"""The operator keystore: keys sealed by the master key and bound to their chain and address,
rewrapped by a master-key rotation, and switched from pending to active to retired conditionally."""

from __future__ import annotations

import pytest
from eth_account import Account
from liandong.vault import operator_keys
from liandong.vault.crypto import Keyring, MasterKey, VaultError
from liandong.vault.operator_keys import OperatorKeyStatus
from liandong.vault.rotation import rotate_master_key
from liandong.vault.tables import OPERATOR_KEYS
from sqlalchemy import Engine, update
from sqlmodel import Session, select


def test_a_generated_key_opens_only_for_its_chain_and_address_and_survives_rotation(
    engine: Engine, keyring: Keyring
) -> None:
    with Session(engine) as session:
        address = operator_keys.generate_operator_key(session, keyring, 8453)
        key = operator_keys.key_for(session, keyring, 8453, address.lower())
        assert key is not None
        assert Account.from_key(key).address == address
        [wrapped] = session.connection().execute(select(OPERATOR_KEYS.c.wrapped_key)).scalars()
        assert bytes.fromhex(key[2:]) not in wrapped
        assert operator_keys.key_for(session, keyring, 1, address) is None  # another chain: none

        other = Account.create().address  # the row moved to another address does not open
        session.connection().execute(update(OPERATOR_KEYS).values(address=other))
        with pytest.raises(VaultError, match="does not unwrap"):
            operator_keys.key_for(session, keyring, 8453, other)
        session.rollback()

        new_key = MasterKey.generate()
        assert rotate_master_key(session, keyring, new_key) == 1
        assert operator_keys.key_for(session, Keyring(new_key), 8453, address) == key  # new key alone
        with pytest.raises(VaultError, match="not known here"):
            operator_keys.key_for(session, keyring, 8453, address)  # the old master key opens nothing


def test_recording_the_escrow_s_operator_activates_it_and_retires_the_one_before(
    engine: Engine, keyring: Keyring
) -> None:
    with Session(engine) as session:
        first = operator_keys.generate_operator_key(session, keyring, 1)
        second = operator_keys.generate_operator_key(session, keyring, 1)

        def statuses() -> list[tuple[str, OperatorKeyStatus]]:
            return [(key.address, key.status) for key in operator_keys.operator_keys(session, 1)]

        assert statuses() == [(first, OperatorKeyStatus.PENDING), (second, OperatorKeyStatus.PENDING)]
        operator_keys.record_operator(session, 1, first)
        operator_keys.record_operator(session, 1, first)  # every node records it: the same outcome
        assert statuses() == [(first, OperatorKeyStatus.ACTIVE), (second, OperatorKeyStatus.PENDING)]
        operator_keys.record_operator(session, 1, second)
        assert statuses() == [(first, OperatorKeyStatus.RETIRED), (second, OperatorKeyStatus.ACTIVE)]
        operator_keys.record_operator(session, 1, Account.create().address)  # a key the shop lacks
        assert statuses() == [(first, OperatorKeyStatus.RETIRED), (second, OperatorKeyStatus.RETIRED)]
