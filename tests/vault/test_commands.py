"""`liandong vault rotate` end to end, with settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from liandong.cli.vault import vault_app
from liandong.core.config import Settings
from liandong.store.db import make_engine, migrate
from liandong.store.models import CardKey
from liandong.vault.crypto import MasterKey, load_keyring, previous_key_file
from liandong.vault.importer import import_keys
from liandong.vault.service import Vault
from sqlmodel import Session, select
from typer.testing import CliRunner

from .conftest import add_product


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # away from any .env of the checkout
    for name in ("LIANDONG_MASTER_KEY", "LIANDONG_MASTER_KEY_FILE", "LIANDONG_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIANDONG_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_rotate(data_dir: Path) -> None:
    settings = Settings()
    data_dir.mkdir()
    migrate(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    before = load_keyring(settings)
    with Session(engine) as session:
        product_id = add_product(session, "P1")
        import_keys(session, Vault(before), product_id, "k.txt", b"ABCD\n", "txt")

    result = CliRunner().invoke(vault_app, ["rotate", "--batch-size", "10", "--wait", "0"])

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "1 product(s) have new data keys and 1 card key(s) were re-encrypted" in output
    assert f"the previous key {before.primary.key_id} is removed" in output
    assert not previous_key_file(data_dir / "master.key").exists()  # no node runs: none to wait for
    after = load_keyring(Settings())
    assert after.primary != before.primary
    assert after.previous == ()
    with Session(engine) as session:
        ciphertext = session.exec(select(CardKey.ciphertext)).one()
        assert Vault(after).decrypt(session, product_id, ciphertext) == "ABCD"
    engine.dispose()


def test_rotate_refuses_an_environment_key(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIANDONG_MASTER_KEY", MasterKey.generate().to_base64())
    result = CliRunner().invoke(vault_app, ["rotate"])
    assert result.exit_code == 1
    assert "secret store" in result.output
    assert not (data_dir / "master.key").exists()
