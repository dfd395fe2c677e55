"""Deploy a merchant's LiandongEscrow and write the deployment record the shop reads.

    ape run deploy --network ethereum:sepolia:alchemy --account merchant \\
        --operator 0xHotKey --payout 0xColdWallet

On a local chain the first test account deploys unless `--account` says otherwise, and
`--demo-token` adds a mintable demo stablecoin. Running it again against the same chain reuses
the recorded escrow (the record says where it is and the code is still there) unless `--force`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ape import accounts, chain, project
from ape.cli import ConnectedProviderCommand, account_option, ape_cli_context
from liandong.chain.deployment import DeploymentRecord

DEMO_TOKEN = ("Demo USD", "DUSD", 6)
DEMO_TOKEN_FAUCET = 1_000_000 * 10**6


def _default_record_path() -> Path:
    return Path("deployments") / f"{chain.chain_id}.json"


def _existing_deployment(record_path: Path) -> DeploymentRecord | None:
    """The recorded deployment if it is on this chain and its code is still there."""
    if not record_path.is_file():
        return None
    record = DeploymentRecord.load(record_path)
    if record.chain_id != chain.chain_id or not chain.provider.get_code(record.escrow):
        return None
    return record


def _deploy_demo_token(deployer: Any, holders: list[Any]) -> str:
    token = deployer.deploy(project.MintableToken, *DEMO_TOKEN)
    for holder in holders:
        token.mint(holder, DEMO_TOKEN_FAUCET, sender=deployer)
    return str(token.address)


@click.command(cls=ConnectedProviderCommand)
@ape_cli_context()
@account_option(prompt=False)
@click.option("--owner", help="Cold key that administers the escrow (default: the deployer).")
@click.option("--operator", help="The shop's hot key that signs quotes (default: the deployer).")
@click.option("--payout", help="Where the merchant's funds go (default: the owner).")
@click.option("--fee-recipient", help="Where platform fees go (default: the payout address).")
@click.option("--fee-bps", type=click.IntRange(0, 1_000), default=0, show_default=True)
@click.option("--demo-token", is_flag=True, help="Also deploy a mintable demo stablecoin (local chains).")
@click.option("--record", "record_path", type=click.Path(path_type=Path), help="Deployment record path.")
@click.option("--force", is_flag=True, help="Deploy again even if the record points at a live escrow.")
def cli(
    cli_ctx: Any,
    account: Any,
    owner: str | None,
    operator: str | None,
    payout: str | None,
    fee_recipient: str | None,
    fee_bps: int,
    demo_token: bool,
    record_path: Path | None,
    force: bool,
) -> None:
    """Deploy LiandongEscrow (and a demo token) and write the deployment record."""
    record_path = record_path or _default_record_path()
    existing = None if force else _existing_deployment(record_path)
    if existing is not None:
        cli_ctx.logger.success(f"Escrow already deployed at {existing.escrow} (record {record_path}).")
        click.echo(record_path)
        return

    is_local = cli_ctx.network_manager.network.is_local
    deployer = account or (accounts.test_accounts[0] if is_local else None)
    if deployer is None:
        raise click.UsageError("Choose the deploying account with --account on a live network.")
    owner = owner or str(deployer.address)
    operator = operator or str(deployer.address)
    payout = payout or owner
    fee_recipient = fee_recipient or payout

    escrow = deployer.deploy(project.LiandongEscrow, owner, operator, payout, fee_recipient, fee_bps)
    tokens = {}
    if demo_token:
        tokens[DEMO_TOKEN[1]] = _deploy_demo_token(deployer, list(accounts.test_accounts)[:10])

    receipt = escrow.creation_metadata.receipt
    record = DeploymentRecord(
        chain_id=chain.chain_id,
        escrow=str(escrow.address),
        block_number=receipt.block_number,
        transaction_hash=str(receipt.txn_hash),
        owner=owner,
        operator=operator,
        payout=payout,
        fee_recipient=fee_recipient,
        fee_bps=fee_bps,
        abi=[entry.model_dump(mode="json", by_alias=True) for entry in escrow.contract_type.abi],
        tokens=tokens,
    )
    record.save(record_path)
    cli_ctx.logger.success(f"LiandongEscrow deployed at {escrow.address} on chain {chain.chain_id}.")
    for symbol, address in tokens.items():
        cli_ctx.logger.success(f"Demo token {symbol} deployed at {address}.")
    click.echo(record_path)
