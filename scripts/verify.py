"""Verify a deployed LiandongEscrow against these sources, as a block explorer does.

    ape run verify --network base:mainnet:node [--address 0x…] [--out verification] [--publish]

Without `--address` it takes the escrow of this chain's deployment record. It writes the
standard-JSON input and metadata that Etherscan, Blockscout and Sourcify accept. With `--publish`
it then publishes the sources to the network's Etherscan-family explorer through ape-etherscan
(`pip install -e '.[etherscan]'`: not installed by `make setup`, because with it installed ape asks
api.etherscan.io for its chain list whenever it looks up an explorer, even on a local chain), with
the API key in ETHERSCAN_API_KEY (one Etherscan V2 key serves every chain Etherscan lists).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import click
from ape import chain, project
from ape.cli import ConnectedProviderCommand
from liandong.chain.deployment import DeploymentRecord
from liandong.chain.verify import verify_escrow


def _etherscan() -> Any:
    """This network's Etherscan-family explorer, checked before anything is compiled or sent."""
    try:
        known: dict[str, Any] = importlib.import_module("ape_etherscan.utils").NETWORKS
    except ImportError:
        raise click.ClickException("--publish needs ape-etherscan: pip install -e '.[etherscan]'") from None
    network = chain.provider.network
    if network.name.removesuffix("-fork") not in known.get(network.ecosystem.name, ()):
        raise click.ClickException(
            f"ape-etherscan knows no explorer for {network.choice}; publish the files of the output "
            "folder by hand (or to Sourcify)"
        )
    if not os.environ.get("ETHERSCAN_API_KEY"):
        raise click.ClickException("--publish needs an Etherscan API key in ETHERSCAN_API_KEY")
    return network.explorer


@click.command(cls=ConnectedProviderCommand)
@click.option("--address", default=None, help="The escrow (default: this chain's deployment record).")
@click.option("--out", default="verification", type=click.Path(path_type=Path), help="Output folder.")
@click.option("--publish", is_flag=True, help="Then publish the sources to Etherscan (ape-etherscan).")
def cli(address: str | None, out: Path, publish: bool) -> None:
    explorer = _etherscan() if publish else None
    escrow = address or DeploymentRecord.load(Path("deployments") / f"{chain.chain_id}.json").escrow
    result = verify_escrow(bytes(chain.provider.get_code(escrow)), escrow, out)
    if not result.matches:
        raise click.ClickException(f"{escrow} does not run the escrow compiled from these sources")
    click.echo(
        f"match: {escrow}; metadata {'matches' if result.metadata_matches else 'differs'}; files in {out}/"
    )
    if explorer is not None:
        # ape-etherscan publishes the contract type ape knows at the address: this project's escrow.
        chain.contracts.cache_contract_type(escrow, project.LiandongEscrow.contract_type)
        explorer.publish_contract(escrow)
        click.echo(f"published: {explorer.get_address_url(escrow)}")
