"""Issue 12, item 7: the shop's files are its user's alone, the SMTP login never crosses the wire in
clear, and secrets do not show in settings' reprs or dumps."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from pathlib import Path

import pytest
from liandong.core.config import Settings
from liandong.delivery.channels import ChannelError, DeliveryNotice
from liandong.delivery.mail import EmailChannel, is_loopback_host
from liandong.delivery.templates import TemplateBook
from liandong.devtools.devnet import free_port
from liandong.vault.crypto import MasterKey

from tests.cli.runner import read_until_ready, start_up, stop, up_env
from tests.peers import Inbox

NOTICE = DeliveryNotice(
    order_id=1,
    chain_order_id="0x" + "ab" * 32,
    product_name="Game key",
    quantity=1,
    email="buyer@example.com",
    phone=None,
    payer=None,
    commitment=None,
    order_url="http://shop.test/orders/0x" + "ab" * 32,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _loosen(data_dir: Path) -> None:
    data_dir.chmod(0o755)
    for entry in data_dir.iterdir():
        if entry.is_file():
            entry.chmod(0o644)


def _assert_private(data_dir: Path, *required: str) -> None:
    assert _mode(data_dir) == 0o700
    files = {entry.name: _mode(entry) for entry in data_dir.iterdir() if entry.is_file()}
    assert set(required) <= set(files), files
    assert {name: mode for name, mode in files.items() if mode != 0o600} == {}


@pytest.mark.slow
def test_a_local_user_cannot_read_the_database_wal_master_key_or_chain_state(tmp_path: Path) -> None:
    """`liandong up` in a folder an older version left 0755, with a 0644 master key: once the shop
    runs, the folder is 0700 and the database, its WAL and shared memory, the key and (after the
    stop) the chain's state are 0600; a second start tightens what was loosened in between."""
    data_dir = tmp_path / "shop"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "master.key").write_text(MasterKey.generate().to_base64() + "\n")
    (data_dir / "master.key").chmod(0o644)
    env = up_env(data_dir, free_port(), free_port())
    for run in range(2):
        shop = start_up(env)
        try:
            read_until_ready(shop)
            _assert_private(data_dir, "liandong.db", "liandong.db-wal", "liandong.db-shm", "master.key")
        finally:
            code, output = stop(shop, signal.SIGINT)
        assert code == 0, output
        _assert_private(data_dir, "liandong.db", "master.key", "anvil-state.json", "deployment.json")
        if run == 0:
            _loosen(data_dir)


def _remote_name_of_this_machine() -> str:
    """A name that resolves to this machine's loopback but is no loopback literal, so the e-mail
    channel must treat it as a remote server (it resolves no name to decide)."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 25, socket.AF_INET)}
    if not addresses or not all(address.startswith("127.") for address in addresses):
        pytest.skip(f"{name} does not resolve to the loopback range here")
    assert not is_loopback_host(name)
    return name


def _email(**overrides: object) -> EmailChannel:
    settings = Settings(_env_file=None, smtp_sender="keys@shop.test", **overrides)  # type: ignore[call-arg, arg-type]
    return EmailChannel(settings, TemplateBook())


def test_an_smtp_login_to_a_remote_server_is_never_sent_in_clear(smtp: tuple[Inbox, int]) -> None:
    """aiosmtpd offers no STARTTLS. Reached by a remote name, the channel insists on STARTTLS by
    default and refuses when it is off, unless plaintext is explicitly allowed: no login, no mail."""
    inbox, port = smtp
    remote = _remote_name_of_this_machine()
    login = {"smtp_host": remote, "smtp_port": port, "smtp_username": "shop", "smtp_password": "pw"}
    for overrides in ({}, {"smtp_starttls": False}, {"smtp_starttls": True}):
        with pytest.raises(ChannelError, match="e-mail not sent"):
            asyncio.run(_email(**login, **overrides).send(NOTICE))
    assert inbox.logins == []
    assert inbox.envelopes == []

    explicit = {"smtp_starttls": False, "smtp_allow_plaintext": True}  # the operator's choice, twice over
    asyncio.run(_email(**login, **explicit).send(NOTICE))
    assert inbox.logins == [(b"shop", b"pw")]
    assert len(inbox.envelopes) == 1


def test_a_loopback_smtp_server_may_be_plaintext(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    for host in ("127.0.0.1", "localhost"):
        channel = _email(smtp_host=host, smtp_port=port, smtp_username="shop", smtp_password="pw")
        asyncio.run(channel.send(NOTICE))
    assert inbox.logins == [(b"shop", b"pw")] * 2
    assert [
        is_loopback_host(host) for host in ("::1", "[::1]", "127.8.9.10", "mail.example", "10.0.0.1")
    ] == [
        True,
        True,
        True,
        False,
        False,
    ]


def test_secrets_do_not_show_in_settings_reprs_or_dumps(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "LIANDONG_OPERATOR_KEY": "0x" + "11" * 32,
        "LIANDONG_MASTER_KEY": MasterKey.generate().to_base64(),
        "LIANDONG_SMTP_PASSWORD": "smtp-password-secret",
        "LIANDONG_WEBHOOK_SECRET": "webhook-secret-value",
        "LIANDONG_SMS_GATEWAY_TOKEN": "sms-gateway-token-value",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    shown = repr(settings) + str(settings) + settings.model_dump_json() + repr(settings.model_dump())
    for value in secrets.values():
        assert value not in shown
    assert settings.operator_key is not None
    assert settings.operator_key.get_secret_value() == secrets["LIANDONG_OPERATOR_KEY"]
    assert os.environ["LIANDONG_SMTP_PASSWORD"] == "smtp-password-secret"
