"""Which chains a node serves (`runtime/chains.py`): the first chain's settings and record, then
`LIANDONG_CHAINS` by name or id; every misconfiguration is refused before anything starts, with the
setting to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from liandong.chain.deployment import DeploymentRecord
from liandong.core.config import ChainSettings, Settings
from liandong.core.errors import InvalidError
from liandong.runtime.chains import chain_setups

ESCROW = "0x" + "ee" * 20


def _record(chain_id: int) -> DeploymentRecord:
    return DeploymentRecord(
        chain_id=chain_id,
        escrow=ESCROW,
        block_number=1,
        transaction_hash="0x" + "00" * 32,
        owner=ESCROW,
        operator=ESCROW,
        payout=ESCROW,
        fee_recipient=ESCROW,
        fee_bps=0,
        abi=[],
    )


def _settings(tmp_path: Path, *chains: ChainSettings) -> Settings:
    return Settings(data_dir=tmp_path, rpc_url="http://a", chains=list(chains), _env_file=None)  # type: ignore[call-arg]


def test_chains_by_profile_name_or_id_with_their_records_in_order(tmp_path: Path) -> None:
    _record(8453).save(tmp_path / "deployments" / "8453.json")
    _record(31339).save(tmp_path / "b.json")
    settings = _settings(
        tmp_path,
        ChainSettings(name="base", rpc_url="https://base", rpc_urls=["https://base-2", "https://base"]),
        ChainSettings(name="31339", rpc_url="http://b", deployment=tmp_path / "b.json", confirmations="safe"),
    )
    setups = chain_setups(settings, _record(31337))
    assert [(s.chain_id, s.name) for s in setups] == [
        (31337, "Local chain A"),
        (8453, "Base"),
        (31339, "Local chain B"),
    ]
    assert setups[1].rpc_urls == ["https://base", "https://base-2"]  # in order, once each
    assert setups[1].ws_url == "wss://base"
    assert (setups[2].confirmations, setups[2].block_time, setups[2].logs_block_range) == ("safe", 2.0, 2000)


def test_a_provider_without_websocket_gets_its_heads_over_http(tmp_path: Path) -> None:
    """`ws_url: "none"` (a provider with no WebSocket) on any chain: no subscription is tried, the
    indexer polls at the chain's pace; unset, the WebSocket is the RPC URL's."""
    _record(8453).save(tmp_path / "deployments" / "8453.json")
    _record(10).save(tmp_path / "deployments" / "10.json")
    base = ChainSettings(name="Base", rpc_url="https://base", ws_url="none")
    optimism = ChainSettings(name="OP Mainnet", rpc_url="https://op", ws_url="wss://op-ws")
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path, rpc_url="http://a", ws_url="none", chains=[base, optimism], _env_file=None
    )
    assert [setup.ws_url for setup in chain_setups(settings, _record(31337))] == [None, None, "wss://op-ws"]
    assert _settings(tmp_path).resolved_ws_url == "ws://a"


@pytest.mark.parametrize(
    ("entry", "refusal"),
    [
        (ChainSettings(name="Atlantis", rpc_url="http://x"), "no chain is named 'Atlantis'"),
        (ChainSettings(name="Base", rpc_url="http://x"), "no deployment record at"),
        (
            ChainSettings(name="OP Mainnet", rpc_url="http://x", deployment=Path("base.json")),
            "records an escrow on chain 8453",
        ),
        (ChainSettings(name="31337", rpc_url="http://x", deployment=Path("first.json")), "configured twice"),
    ],
)
def test_a_misconfigured_chain_is_refused_with_the_setting_to_fix(
    tmp_path: Path, entry: ChainSettings, refusal: str
) -> None:
    _record(8453).save(tmp_path / "base.json")
    _record(31337).save(tmp_path / "first.json")
    if entry.deployment is not None:
        entry = entry.model_copy(update={"deployment": tmp_path / entry.deployment})
    with pytest.raises(InvalidError, match=refusal):
        chain_setups(_settings(tmp_path, entry), _record(31337))


def test_a_node_needs_its_first_chains_endpoint(tmp_path: Path) -> None:
    with pytest.raises(InvalidError, match="LIANDONG_RPC_URL"):
        chain_setups(Settings(data_dir=tmp_path, _env_file=None), _record(31337))  # type: ignore[call-arg]
