"""A whole shop for the node tests: a real anvil, the escrow deployed, a node process, a buyer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from liandong.chain.deploy import deploy_local_escrow
from liandong.chain.devnet import Anvil
from liandong.simulate import LocalShop


@pytest.fixture
def shop_factory(tmp_path: Path) -> Iterator[Callable[..., LocalShop]]:
    shops: list[LocalShop] = []

    def make(
        confirmations: int = 0,
        chain_state: Path | None = None,
        stuck_seconds: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> LocalShop:
        anvil = Anvil(state_file=chain_state).start()
        data_dir = tmp_path / f"shop{len(shops)}"
        data_dir.mkdir()
        record = deploy_local_escrow(anvil.http_url, data_dir / "deployment.json")
        shop = LocalShop(anvil, record, data_dir, confirmations, stuck_seconds, env or {})
        shops.append(shop)
        return shop

    yield make
    for shop in shops:
        shop.kill()
        shop.anvil.stop()
