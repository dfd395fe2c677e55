"""Verify a deployed LiandongEscrow against these sources, as a block explorer does.

    ape run verify --network ethereum:sepolia:alchemy [--address 0x…] [--out verification]

Without `--address` it takes the escrow of this chain's deployment record. It writes the
standard-JSON input and metadata that Etherscan, Blockscout and Sourcify accept.
"""

from __future__ import annotations

from pathlib import Path

import click
from ape import chain
from ape.cli import ConnectedProviderCommand
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.verify import verify_escrow


@click.command(cls=ConnectedProviderCommand)
@click.option("--address", default=None, help="The escrow (default: this chain's deployment record).")
@click.option("--out", default="verification", type=click.Path(path_type=Path), help="Output folder.")
def cli(address: str | None, out: Path) -> None:
    escrow = address or DeploymentRecord.load(Path("deployments") / f"{chain.chain_id}.json").escrow
    result = verify_escrow(bytes(chain.provider.get_code(escrow)), escrow, out)
    if not result.matches:
        raise click.ClickException(f"{escrow} does not run the escrow compiled from these sources")
    click.echo(
        f"match: {escrow}; metadata {'matches' if result.metadata_matches else 'differs'}; files in {out}/"
    )
