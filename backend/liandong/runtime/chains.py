"""The chains one node serves, resolved from the settings: `chain_setups` names each one's
endpoints, escrow deployment and confirmation override, first the chain of `LIANDONG_RPC_URL` and
the shop's deployment record, then the entries of `LIANDONG_CHAINS` in their order.

Resolution is separate from the composition root so that a misconfiguration (a chain named twice,
a record for another chain than its entry names, a chain no profile knows without its own policy)
is refused before any part starts, with the setting to fix. The first chain is the shop's default:
prices and quotes that name no chain are for it, and rows written before the shop served several
chains (chain 0, see migration 0009) are adopted for it by `adopt_unassigned`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, update
from sqlmodel import Session, col

from liandong.chain.deployment import DeploymentRecord
from liandong.chain.profiles import ChainProfile, ProfileNotFoundError, load_profiles, profile_by_name
from liandong.chain.quotes import NATIVE_COIN
from liandong.chain.tokens import token_info
from liandong.core.config import ChainSettings, Settings
from liandong.core.errors import InvalidError
from liandong.services.catalogue import Pricing, TokenRef
from liandong.store.models import ProductPrice, ShopOrder

DEFAULT_LOGS_BLOCK_RANGE = 2_000
"""For a chain without a profile: what most providers answer."""

UNASSIGNED_CHAIN = 0
"""The chain of rows written before migration 0009: no network uses it."""


@dataclass(frozen=True)
class ChainSetup:
    """One chain as a node serves it."""

    record: DeploymentRecord
    rpc_urls: list[str]
    """The first is the chain's main endpoint (the operator watch's, the funds page's)."""
    ws_url: str | None
    confirmations: int | str | None
    """This chain's override of the confirmation policy; None: the settings', else the profile's."""
    profile: ChainProfile | None
    """None for a chain the shipped profiles do not know (a private chain)."""

    @property
    def chain_id(self) -> int:
        return self.record.chain_id

    @property
    def name(self) -> str:
        return self.profile.name if self.profile else f"Chain {self.chain_id}"

    @property
    def block_time(self) -> float | None:
        return self.profile.block_time if self.profile else None

    @property
    def logs_block_range(self) -> int:
        """The `eth_getLogs` range the indexer starts with (it shrinks it when a provider refuses)."""
        return self.profile.logs_block_range if self.profile else DEFAULT_LOGS_BLOCK_RANGE


def chain_id_named(name: str) -> int:
    """A chain by its profile's name ("Base", case-insensitive) or its id ("8453")."""
    if name.isdigit():
        return int(name)
    try:
        return profile_by_name(name).chain_id
    except ProfileNotFoundError:
        known = ", ".join(sorted(found.name for found in load_profiles().values()))
        raise InvalidError(f"no chain is named {name!r} (known: {known})") from None


def _more_chain(settings: Settings, entry: ChainSettings) -> ChainSetup:
    chain_id = chain_id_named(entry.name)
    path = entry.deployment or settings.data_dir / "deployments" / f"{chain_id}.json"
    if not Path(path).is_file():
        raise InvalidError(f"LIANDONG_CHAINS: {entry.name}: no deployment record at {path}")
    record = DeploymentRecord.load(Path(path))
    if record.chain_id != chain_id:
        raise InvalidError(
            f"LIANDONG_CHAINS: {entry.name} is chain {chain_id}, but {path} records an escrow on chain"
            f" {record.chain_id}"
        )
    urls = list(dict.fromkeys([entry.rpc_url, *entry.rpc_urls]))
    return ChainSetup(record, urls, entry.resolved_ws_url, entry.confirmations, load_profiles().get(chain_id))


def chain_setups(settings: Settings, record: DeploymentRecord) -> list[ChainSetup]:
    """The node's chains: `record`'s on `settings.rpc_url` first, then `settings.chains`."""
    if settings.rpc_url is None:
        raise InvalidError("a node needs LIANDONG_RPC_URL")
    first = ChainSetup(
        record,
        list(dict.fromkeys([settings.rpc_url, *settings.rpc_urls])),
        settings.resolved_ws_url,
        None,
        load_profiles().get(record.chain_id),
    )
    setups = [first, *(_more_chain(settings, entry) for entry in settings.chains)]
    ids = [setup.chain_id for setup in setups]
    if len(set(ids)) != len(ids):
        raise InvalidError(f"a chain is configured twice (chain ids {ids}): one entry per chain")
    if UNASSIGNED_CHAIN in ids:
        raise InvalidError("chain id 0 is not a network")
    return setups


def adopt_unassigned(engine: Engine, chain_id: int) -> None:
    """Gives rows of the one-chain era (chain 0) the shop's first chain; a no-op once done."""
    with Session(engine) as session:
        for table in (ShopOrder, ProductPrice):
            session.execute(
                update(table).where(col(table.chain_id) == UNASSIGNED_CHAIN).values(chain_id=chain_id)
            )
        session.commit()


def pricing_of(setups: list[ChainSetup]) -> Pricing:
    """The tokens prices may name by symbol on each chain: the native coin, the profile's
    canonical stablecoins, the deployment's own tokens (their decimals asked of the chain once; a
    token that does not answer can still be priced by address, in base units)."""
    chains: dict[int, dict[str, TokenRef]] = {}
    for setup in setups:
        native = token_info(setup.chain_id, None, NATIVE_COIN)
        tokens = {native.symbol.upper(): TokenRef(NATIVE_COIN, native.decimals or 18)}
        if setup.profile is not None:
            for symbol, canonical in setup.profile.tokens.items():
                tokens[symbol] = TokenRef(canonical.address.lower(), canonical.decimals)
        for symbol, address in setup.record.tokens.items():
            info = token_info(setup.chain_id, setup.rpc_urls[0] if setup.rpc_urls else None, address.lower())
            if info.decimals is not None:
                tokens[symbol.upper()] = TokenRef(address.lower(), info.decimals)
        chains[setup.chain_id] = tokens
    return Pricing(chains)
