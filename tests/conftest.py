"""Shared pytest set-up. Contract tests run through ape's pytest plugin, which starts anvil
(ape-foundry, `host: auto` picks a free port) and isolates each test with snapshots.

Store-level tests get a fresh, migrated SQLite database per test, copied from one migrated once
per session (migrating is slow).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from liandong.devtools.deploy import deploy_local_escrow
from liandong.devtools.devnet import Anvil
from liandong.devtools.postgres import scratch_database
from liandong.devtools.simulate import LocalChain, LocalShop
from liandong.store.db import make_engine, migrate
from sqlalchemy import Engine
from sqlmodel import Session

from tests.peers import Endpoint, Inbox, start_smtp

POSTGRES_SERVER = os.environ.get("LIANDONG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A database of the caller's own on the machine's PostgreSQL server, dropped afterwards."""
    with scratch_database(POSTGRES_SERVER, "liandong_test") as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_path(tmp_path: Path, migrated_template: Path) -> Path:
    path = tmp_path / "shop.db"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def engine(db_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{db_path}")
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        yield session


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) on a free port: its inbox and its port."""
    inbox = Inbox()
    controller = start_smtp(inbox)
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A real HTTP server on a free port that records what is POSTed to it."""
    server = Endpoint()
    yield server
    server.close()


@pytest.fixture
def shop_factory(tmp_path: Path) -> Iterator[Callable[..., LocalShop]]:
    """Whole shops on dev chains: a real anvil each, the escrow deployed, a node process, buyers."""
    shops: list[LocalShop] = []

    def make(
        confirmations: int = 0,
        chain_state: Path | None = None,
        stuck_seconds: float = 30.0,
        env: dict[str, str] | None = None,
        more_chains: Sequence[tuple[int, float | None]] = (),
    ) -> LocalShop:
        """`more_chains`: (chain id, block time) of more anvils the node serves besides the first."""
        anvil = Anvil(state_file=chain_state).start()
        anvils.append(anvil)
        data_dir = tmp_path / f"shop{len(shops)}"
        data_dir.mkdir()
        record = deploy_local_escrow(anvil.http_url, data_dir / "deployment.json")
        chains = []
        for chain_id, block_time in more_chains:
            more = Anvil(chain_id=chain_id, block_time=block_time).start()
            anvils.append(more)
            path = data_dir / "deployments" / f"{chain_id}.json"
            chains.append(LocalChain(more, deploy_local_escrow(more.http_url, path), path))
        shop = LocalShop(anvil, record, data_dir, confirmations, stuck_seconds, env or {}, more_chains=chains)
        shops.append(shop)
        return shop

    anvils: list[Anvil] = []
    try:
        yield make
    finally:
        for shop in shops:
            shop.kill()
        for anvil in anvils:
            anvil.stop()
