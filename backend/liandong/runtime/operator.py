"""Which key a node signs with: the one the escrow names as its operator, followed while it runs.

Quotes (every node's API) and settlements (the leader's sender) count only when signed by the
escrow's `operator()`, and a rotation (`liandong escrow rotate-operator`, then the owner's
`setOperator`) changes it under running nodes. `OperatorWatch` reads `operator()` every few seconds;
when it names another address it finds that key (the configured `LIANDONG_OPERATOR_KEY` or the
keystore, `vault/operator_keys.py`) and hands it to the node, which switches its quote signer and
its sender at once, without a restart. Quotes signed by the old key stop verifying at that moment:
the escrow checks a quote against the operator of the moment it is paid, so a buyer holding one is
refused by the escrow (nothing is taken) and asks for a new quote. An address the node holds no key
for (the operator revoked, or set to a key the shop does not hold) is logged as an alert, and the
node keeps the key it has, whose quotes and settlements the escrow now refuses. A node serving
several chains runs one watch per chain (each escrow names its own operator), reading through the
chain's endpoints in turn, so one dead URL does not blind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from eth_account import Account
from sqlalchemy import Engine
from sqlmodel import Session

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.escrow import OPERATOR, decode_address
from liandong.chain.rpc import rpc_call
from liandong.core.config import Settings
from liandong.core.errors import InvalidError
from liandong.vault import operator_keys
from liandong.vault.crypto import load_keyring

log = logging.getLogger(__name__)


def operator_on_chain(rpc_url: str, escrow: str) -> str:
    """The escrow's `operator()` now (checksummed; the zero address once revoked)."""
    result = rpc_call(rpc_url, "eth_call", [{"to": escrow, "data": "0x" + OPERATOR.hex()}, "latest"])
    return decode_address(bytes.fromhex(str(result).removeprefix("0x")))


def operator_on_any(rpc_urls: list[str], escrow: str) -> str:
    """`operator_on_chain` through the first of the chain's endpoints that answers."""
    failure: Exception = ValueError("no endpoint")
    for rpc_url in rpc_urls:
        try:
            return operator_on_chain(rpc_url, escrow)
        except (OSError, RuntimeError, ValueError) as error:  # unreachable, refused, not JSON-RPC
            failure = error
    raise failure


def key_of(engine: Engine, settings: Settings, chain_id: int, address: str) -> str | None:
    """The private key of `address`: the configured one, or the keystore's."""
    configured = settings.operator_key.get_secret_value() if settings.operator_key else None
    if configured is not None and Account.from_key(configured).address == address:
        return configured
    with Session(engine) as session:
        return operator_keys.key_for(session, load_keyring(settings), chain_id, address)


def starting_key(engine: Engine, settings: Settings, record: DeploymentRecord, rpc_urls: list[str]) -> str:
    """The key a node starts with on `record`'s chain (read through the first of `rpc_urls` that
    answers): the escrow's operator's when the node holds it, else the configured one (the chain
    may be unreachable now; the watch corrects it later)."""
    try:
        current = operator_on_any(rpc_urls, record.escrow)
    except (OSError, RuntimeError, ValueError) as error:  # unreachable, refused, not JSON-RPC
        log.warning("cannot read the escrow's operator (%s); starting with the configured key", error)
    else:
        key = key_of(engine, settings, record.chain_id, current)
        if key is not None:
            with Session(engine) as session:
                operator_keys.record_operator(session, record.chain_id, current)
            return key
    if settings.operator_key is None:
        raise InvalidError(
            "a node needs LIANDONG_OPERATOR_KEY (the key `ape run deploy --operator` named), or the"
            " escrow's operator key in its keystore (`liandong escrow rotate-operator`)"
        )
    return settings.operator_key.get_secret_value()


class OperatorWatch:
    """Follows the escrow's `operator()` and hands the node the matching key when it changes."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        record: DeploymentRecord,
        rpc_urls: list[str],
        current_key: str,
        on_switch: Callable[[str], None],
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.record = record
        self.rpc_urls = rpc_urls
        self.address = str(Account.from_key(current_key).address)
        """The address this node signs as."""
        self.on_switch = on_switch
        self._unknown: str | None = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.operator_check_seconds)
            try:
                await asyncio.to_thread(self.check)
            except Exception:  # the chain or the database away for a moment: next time
                log.exception("checking the escrow's operator failed")

    def check(self) -> None:
        """One look at the escrow's operator; switches when it names a key this node holds."""
        current = operator_on_any(self.rpc_urls, self.record.escrow)
        if current == self.address:
            return
        key = key_of(self.engine, self.settings, self.record.chain_id, current)
        if key is None:
            if self._unknown != current:
                self._unknown = current
                log.error(
                    "ALERT: the escrow's operator is %s, a key this node does not hold; it keeps signing"
                    " as %s, which the escrow refuses",
                    current,
                    self.address,
                )
            return
        with Session(self.engine) as session:
            operator_keys.record_operator(session, self.record.chain_id, current)
        log.warning("the escrow's operator is now %s (was %s): signing with its key", current, self.address)
        self.address, self._unknown = current, None
        self.on_switch(key)
