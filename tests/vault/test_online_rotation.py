"""Issue 12, item 10: `liandong vault rotate` against a running node that keeps delivering."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from liandong.devtools.simulate import LocalShop
from liandong.store.db import make_engine
from liandong.store.models import CardKey, OrderStatus
from liandong.vault.crypto import Keyring, load_keyring, previous_key_file, read_key_file
from liandong.vault.rotation import live_nodes
from liandong.vault.service import Vault
from liandong.vault.tables import CARD_KEYS, RETIRED_DATA_KEYS
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from .conftest import opens_anything

KEYS = [f"ROT-{n:03}" for n in range(60)]


@pytest.mark.slow
def test_rotation_while_a_node_delivers_leaves_nothing_a_leaked_old_master_key_opens(
    shop_factory: Callable[..., LocalShop], tmp_path: Path
) -> None:
    shop = shop_factory()
    product = shop.add_product("rotate", KEYS)
    settings = shop.settings()
    old_master = load_keyring(settings).primary
    shop.start()
    shop.wait_for(lambda: set(live_nodes(shop.engine).values()) == {old_master.key_id}, 10, "the node's ack")
    quotes = [shop.quote(product) for _ in range(8)]
    before = _dump(settings.resolved_database_url, tmp_path / "before.db")  # leaked with the old key

    rotation = subprocess.Popen(
        ["liandong", "vault", "rotate", "--batch-size", "5", "--wait", "20"],
        env=shop.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    buyer = shop.buyer(3)
    for issued in quotes:  # paid while the stock is re-encrypted in batches of 5
        buyer.pay(issued.quote, issued.signature)
        time.sleep(0.05)
    output, _ = rotation.communicate(timeout=90)
    assert rotation.returncode == 0, output
    assert "60 card key(s) were re-encrypted" in " ".join(output.split())

    shop.wait_for(
        lambda: all(shop.order(q.order.chain_order_id).status == OrderStatus.DELIVERED for q in quotes),
        30,
        "every order paid during the rotation delivered",
    )
    key_file = settings.resolved_master_key_file
    assert not previous_key_file(key_file).exists()  # the node acknowledged the new key
    new_only = Vault(Keyring(read_key_file(key_file)))
    with Session(shop.engine) as session:
        rows = session.exec(select(CardKey).order_by(col(CardKey.id))).all()
        assert sorted(new_only.decrypt(session, product, row.ciphertext) for row in rows) == KEYS
        assert len([row for row in rows if row.order_id is not None]) == len(quotes)
        generations = session.connection().execute(select(CARD_KEYS.c.key_generation).distinct()).scalars()
        assert list(generations) == [2]
        assert session.connection().execute(select(RETIRED_DATA_KEYS.c.id)).all() == []

    after = _dump(settings.resolved_database_url, tmp_path / "after.db")
    with Session(before) as earlier, Session(after) as later:
        assert opens_anything(old_master, earlier)  # the old key opened the old dump...
        assert not opens_anything(old_master, later)  # ...but nothing in a later one,
        assert not opens_anything(old_master, later, earlier)  # not even with the old data keys
    before.dispose()
    after.dispose()


def _dump(database_url: str, path: Path) -> Engine:
    """A consistent copy of the shop's SQLite database, as a dump would be."""
    source = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as target:
        source.backup(target)
    source.close()
    return make_engine(f"sqlite:///{path}")
