"""The real networks `ape run deploy --network <ecosystem>:<network>:node` reaches: each ecosystem
comes from its pinned plugin (not from a generic chain list), knows its chain ids and has the `node`
provider, and asking ape so opens no connection beyond this machine. A deployment to each plugin's
mainnet, its RPC URI in ape's global config as a merchant sets it, lands on an anvil that answers
with that chain's id, and the record says that chain."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ape import networks
from liandong.chain.deployment import PROJECT_ROOT, DeploymentRecord
from liandong.chain.rpc import rpc_call
from liandong.devtools.devnet import DEV_CHAIN_ID, Anvil

NETWORKS = {
    ("ethereum", "ape_ethereum"): {"mainnet": 1, "sepolia": 11155111},
    ("base", "ape_base"): {"mainnet": 8453, "sepolia": 84532},
    ("arbitrum", "ape_arbitrum"): {"mainnet": 42161, "sepolia": 421614},
    ("optimism", "ape_optimism"): {"mainnet": 10, "sepolia": 11155420},
    ("polygon", "ape_polygon"): {"mainnet": 137, "amoy": 80002},
    ("bsc", "ape_bsc"): {"mainnet": 56, "testnet": 97},
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to another host fails the test."""
    connect = socket.socket.connect

    def local_only(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"connection to {address}")
        connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize(("ecosystem", "plugin"), list(NETWORKS))
def test_the_ecosystem_comes_from_its_plugin_with_its_chains(ecosystem: str, plugin: str) -> None:
    found = networks.ecosystems[ecosystem]
    assert type(found).__module__.split(".")[0] == plugin
    for name, chain_id in NETWORKS[ecosystem, plugin].items():
        network = found.get_network(name)
        assert network.chain_id == chain_id
        assert "node" in network.providers


@dataclass
class ChainAnvil(Anvil):
    """anvil answering with another chain's id, and mining every second (ape waits for a live
    network's confirmations)."""

    chain_id: int = DEV_CHAIN_ID

    def command(self) -> list[str]:
        args = super().command()
        args[args.index("--chain-id") + 1] = str(self.chain_id)
        return args


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ecosystem", "chain_id"),
    [
        (ecosystem, chains["mainnet"])
        for (ecosystem, plugin), chains in NETWORKS.items()
        if plugin != "ape_ethereum"
    ],
)
def test_ape_run_deploy_on_the_network_writes_that_chains_record(
    ecosystem: str, chain_id: int, tmp_path: Path
) -> None:
    with ChainAnvil(block_time=1, chain_id=chain_id) as node:
        # ape's data folder of this test alone, with the merchant's RPC in its global config.
        (tmp_path / "ape-config.yaml").write_text(
            f"node:\n  {ecosystem}:\n    mainnet:\n      uri: {node.http_url}\n"
        )
        record_path = tmp_path / "record.json"
        network = ("--network", f"{ecosystem}:mainnet:node", "--account", "TEST::0")
        deployed = subprocess.run(
            ["ape", "run", "deploy", *network, "--record", str(record_path)],
            cwd=PROJECT_ROOT,
            env={**os.environ, "APE_DATA_FOLDER": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        record = DeploymentRecord.load(record_path)
        assert record.chain_id == chain_id
        assert rpc_call(node.http_url, "eth_getCode", [record.escrow, "latest"]) not in ("0x", "0x0")
