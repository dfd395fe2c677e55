#!/usr/bin/env python3
"""How fast the vault imports card keys and rotates the master key, on a throw-away SQLite database.

Imports files of 10,000 and 100,000 generated keys (each into a fresh product, as one TXT file, the
way an operator uploads stock), imports the larger file again (all duplicates: the de-duplication
path), then rotates the master key over those products and 1,000 more. Figures to watch, not
assertions: the target is 100,000 keys in a few seconds.

Usage: bench/import_keys.py   (with .venv's python)
"""

from __future__ import annotations

import base64
import secrets
import tempfile
import time
from pathlib import Path

from liandong.core.config import Settings
from liandong.store.db import open_shop_database
from liandong.store.models import Product
from liandong.vault.crypto import Keyring, MasterKey
from liandong.vault.importer import import_keys
from liandong.vault.rotation import rotate_master_key
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session

SIZES = (10_000, 100_000)
EXTRA_PRODUCTS = 1_000
"""Products given a data key before the rotation, so that it has a realistic number to rewrap."""


def generated_keys(count: int) -> bytes:
    """Keys shaped like real ones (five groups of five), random so none is a duplicate by accident."""
    lines = []
    for _ in range(count):
        text = base64.b32encode(secrets.token_bytes(15)).decode() + "X"
        lines.append("-".join(text[start : start + 5] for start in range(0, 25, 5)))
    return "\n".join(lines).encode()


def add_product(session: Session, sku: str) -> int:
    product = Product(sku=sku, name=sku)
    session.add(product)
    session.flush()
    assert product.id is not None
    return product.id


def timed_import(engine: Engine, vault: Vault, product_id: int, label: str, data: bytes) -> None:
    with Session(engine) as session:
        started = time.perf_counter()
        report = import_keys(session, vault, product_id, label, data, "txt")
        seconds = time.perf_counter() - started
    keys = report.imported + report.duplicates_in_file + report.duplicates_existing
    print(
        f"{label:<28} {seconds:6.2f} s  {keys / seconds:>9,.0f} keys/s"
        f"  (imported {report.imported:,}, already in stock {report.duplicates_existing:,})"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        engine = open_shop_database(Settings(data_dir=Path(directory), database_url=None))
        keyring = Keyring(MasterKey.generate())
        vault = Vault(keyring)
        for size in SIZES:
            data = generated_keys(size)
            with Session(engine) as session:
                product_id = add_product(session, f"BENCH-{size}")
                session.commit()
            timed_import(engine, vault, product_id, f"import {size:,} keys", data)
            if size == max(SIZES):
                timed_import(engine, vault, product_id, f"re-import {size:,} (all dup.)", data)
        with Session(engine) as session:
            for n in range(EXTRA_PRODUCTS):
                vault.data_key(session, add_product(session, f"EXTRA-{n}"))
            session.commit()
        with Session(engine) as session:
            started = time.perf_counter()
            count = rotate_master_key(session, keyring, MasterKey.generate())
            seconds = time.perf_counter() - started
        print(f"rotate master key: {seconds * 1000:6.1f} ms for {count:,} data keys (card keys untouched)")
        engine.dispose()


if __name__ == "__main__":
    main()
