"""An escrow owned by a 2-of-3 Safe: the Safe contracts from npm (`@safe-global/safe-contracts`
1.4.1, their build artifacts' bytecode) deployed on anvil, a withdrawal and a pause proposed by one
owner (the SafeTx `liandong escrow … --propose-safe` prints) and executed with a second owner's
signature. ape-safe signs and executes: its `SafeAccount` over the npm-deployed Safe builds the
same SafeTx (its hash checked against the printed one and the Safe's own `getTransactionHash`),
each owner's ape account signs it as EIP-712, and `execTransaction` carries both signatures."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ape import chain
from ape.contracts import ContractContainer
from ape_safe.accounts import SafeAccount
from ape_safe.exceptions import NotEnoughSignatures
from ape_safe.factory import SafeFactory
from ape_safe.utils import get_safe_tx_hash
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from ethpm_types import ContractType
from liandong.chain.deployment import PROJECT_ROOT, DeploymentRecord
from liandong.chain.quotes import EscrowDomain
from packaging.version import Version

from tests.cli.runner import run
from tests.contracts.conftest import PRICE, ZERO_ADDRESS, order_terms

pytestmark = pytest.mark.slow

SAFE_VERSION = Version("1.4.1")
PROXY_CREATION = keccak(text="ProxyCreation(address,address)")
ARTIFACTS = PROJECT_ROOT / "node_modules/@safe-global/safe-contracts/build/artifacts/contracts"


def _npm_contract(path: str) -> ContractContainer:
    artifact = json.loads((ARTIFACTS / path).read_text())
    return ContractContainer(
        ContractType(
            contractName=artifact["contractName"],
            abi=artifact["abi"],
            deploymentBytecode={"bytecode": artifact["bytecode"]},
        )
    )


@pytest.fixture(scope="module")
def safe_owners(accounts: Any) -> list[Any]:
    return [accounts[7], accounts[8], accounts[9]]


@pytest.fixture(scope="module")
def safe_address(owner: Any, safe_owners: list[Any]) -> Iterator[str]:
    """A 2-of-3 Safe: the singleton and the proxy factory of the npm package, a proxy set up."""
    singleton = owner.deploy(_npm_contract("Safe.sol/Safe.json"))
    factory = owner.deploy(_npm_contract("proxies/SafeProxyFactory.sol/SafeProxyFactory.json"))
    setup = singleton.setup.encode_input(
        [o.address for o in safe_owners], 2, ZERO_ADDRESS, b"", ZERO_ADDRESS, ZERO_ADDRESS, 0, ZERO_ADDRESS
    )
    receipt = factory.createProxyWithNonce(singleton, setup, 0, sender=owner)
    # The raw log: decoding `receipt.events` would look the new proxy up on an explorer.
    [created] = [log for log in receipt.logs if log["topics"][0] == PROXY_CREATION]
    # ape-safe finds the singleton of a version by chain id; on anvil it is the one deployed here.
    SafeFactory._singleton[SAFE_VERSION] = singleton
    yield to_checksum_address(bytes(created["topics"][1])[-20:])
    SafeFactory._singleton.pop(SAFE_VERSION, None)


@pytest.fixture(scope="module")
def escrow(
    project: Any, owner: Any, operator: Any, payout: Any, fee_recipient: Any, safe_address: str
) -> Any:
    """The escrow with the Safe as its owner (overrides the conftest's)."""
    return owner.deploy(project.LiandongEscrow, safe_address, operator, payout, fee_recipient, 0)


@pytest.fixture(scope="module")
def domain(escrow: Any) -> EscrowDomain:
    return EscrowDomain(chain.chain_id, str(escrow.address))


@pytest.fixture
def record(tmp_path: Path, escrow: Any, safe_address: str, operator: Any, payout: Any) -> Path:
    path = tmp_path / "deployment.json"
    DeploymentRecord(
        chain_id=chain.chain_id,
        escrow=str(escrow.address),
        block_number=0,
        transaction_hash="0x",
        owner=safe_address,
        operator=str(operator.address),
        payout=str(payout.address),
        fee_recipient=str(payout.address),
        fee_bps=0,
        abi=[entry.model_dump(mode="json", by_alias=True) for entry in escrow.contract_type.abi],
    ).save(path)
    return path


def _proposed(record: Path, safe: str, *command: str) -> dict[str, Any]:
    """The Safe transaction `liandong escrow` prints for the Safe's owners."""
    env = {**os.environ, "COLUMNS": "250"}
    result = run(
        env,
        "escrow",
        *command,
        "--deployment",
        str(record),
        "--rpc",
        chain.provider.uri,
        "--propose-safe",
        safe,
    )
    assert result.returncode == 0, result.stderr
    proposal: dict[str, Any] = json.loads(result.stdout)
    return proposal


def _execute(safe: SafeAccount, proposal: dict[str, Any], proposer: Any, executor: Any) -> None:
    """One owner signs the printed SafeTx, a second signs and executes it with both signatures."""
    safe_tx = safe.create_safe_tx(
        to=proposal["to"],
        value=int(proposal["value"]),
        data=bytes.fromhex(proposal["data"][2:]),
        nonce=int(proposal["nonce"]),
    )
    assert get_safe_tx_hash(safe_tx) == proposal["safeTxHash"]
    assert safe.contract.getTransactionHash(*safe_tx).hex() == proposal["safeTxHash"].removeprefix("0x")
    signatures = {signer.address: signer.sign_message(safe_tx) for signer in (proposer, executor)}
    with pytest.raises(NotEnoughSignatures):  # the proposer's alone
        safe.create_execute_transaction(safe_tx, {proposer.address: signatures[proposer.address]})
    assert safe.next_nonce == int(proposal["nonce"])
    executor.call(safe.create_execute_transaction(safe_tx, signatures, submitter=executor))
    assert safe.next_nonce == int(proposal["nonce"]) + 1


def test_a_two_of_three_safe_withdraws_and_pauses(
    tmp_path: Path,
    escrow: Any,
    safe_address: str,
    safe_owners: list[Any],
    operator: Any,
    payout: Any,
    buyer: Any,
    paid: Any,
    record: Path,
) -> None:
    assert escrow.owner() == safe_address
    quote = paid()
    escrow.recordDelivery(order_terms(quote, buyer), keccak(b"keys"), sender=operator)
    assert escrow.merchantBalance(ZERO_ADDRESS) == PRICE

    safe_file = tmp_path / "escrow-owner.json"  # ape-safe's record of the Safe, kept out of ~/.ape
    safe_file.write_text(json.dumps({"address": safe_address, "deployed_chain_ids": [chain.chain_id]}))
    safe = SafeAccount(account_file_path=safe_file)
    assert (safe.confirmations_required, set(safe.signers)) == (2, {o.address for o in safe_owners})
    first, second, _third = safe_owners

    one_signature = _proposed(record, safe_address, "withdraw")
    before = payout.balance
    _execute(safe, one_signature, first, second)
    assert payout.balance - before == PRICE
    assert escrow.merchantBalance(ZERO_ADDRESS) == 0
    assert escrow.balance == 0

    _execute(safe, _proposed(record, safe_address, "pause"), first, second)
    assert escrow.paused()
