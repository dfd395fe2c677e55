"""Shared pytest set-up. Contract tests run through ape's pytest plugin, which starts anvil
(ape-foundry, `host: auto` picks a free port) and isolates each test with snapshots.

Store-level tests get a fresh, migrated SQLite database per test, copied from one migrated once
per session (migrating is slow).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from liandong.store.db import make_engine, migrate
from sqlalchemy import Engine
from sqlmodel import Session

from tests.peers import Endpoint, Inbox, start_smtp


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
