"""A shop of several nodes: a real anvil, the escrow deployed, nodes sharing one PostgreSQL database
of the test's own (dropped afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.simulate import LocalShop


@pytest.fixture
def cluster_shop(tmp_path: Path, postgres_url: str) -> Iterator[LocalShop]:
    anvil = Anvil().start()
    record = deploy_local_escrow(anvil.http_url, tmp_path / "deployment.json")
    shop = LocalShop(anvil, record, tmp_path, database_url=postgres_url)
    try:
        yield shop
    finally:
        shop.kill()
        shop.engine.dispose()
        anvil.stop()
