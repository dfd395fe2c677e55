"""Sign-In with Ethereum for buyers, against a real database and real wallet signatures."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from liandong.services.buyer_auth import (
    STATEMENT,
    BuyerAuthError,
    Challenge,
    SiweMessage,
    buyer_address,
    issue_challenge,
    parse_message,
    sign_in,
)
from liandong.store.models import BuyerChallenge, BuyerSession
from sqlalchemy import Engine
from sqlmodel import Session, select

DOMAIN = "shop.example.com"
URI = "https://shop.example.com"
CHAIN_ID = 31337
HOURS = 24.0
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)


@pytest.fixture
def wallet() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


def challenge_for(session: Session, wallet: LocalAccount, now: datetime = NOW) -> Challenge:
    return issue_challenge(
        session, domain=DOMAIN, uri=URI, chain_id=CHAIN_ID, address=wallet.address.lower(), now=now
    )


def signed(wallet: LocalAccount, message: str) -> str:
    return "0x" + bytes(wallet.sign_message(encode_defunct(text=message)).signature).hex()


def login(session: Session, message: str, signature: str, now: datetime = LATER) -> str:
    return sign_in(
        session, message, signature, domain=DOMAIN, chain_id=CHAIN_ID, session_hours=HOURS, now=now
    ).address


def test_challenge_is_the_exact_eip_4361_text(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    assert re.fullmatch(r"[A-Za-z0-9]{16}", challenge.nonce)
    assert challenge.expires_at == NOW + timedelta(minutes=10)
    assert challenge.message == (
        f"shop.example.com wants you to sign in with your Ethereum account:\n"
        f"{wallet.address}\n"
        f"\n"
        f"Sign in to read your Liandong orders and keys.\n"
        f"\n"
        f"URI: https://shop.example.com\n"
        f"Version: 1\n"
        f"Chain ID: 31337\n"
        f"Nonce: {challenge.nonce}\n"
        f"Issued At: 2030-01-02T03:04:05Z\n"
        f"Expiration Time: 2030-01-02T03:14:05Z"
    )
    stored = session.get(BuyerChallenge, challenge.nonce)
    assert stored is not None
    assert stored.used_at is None


def test_each_challenge_has_its_own_nonce(session: Session, wallet: LocalAccount) -> None:
    nonces = {challenge_for(session, wallet).nonce for _ in range(10)}
    assert len(nonces) == 10


@pytest.mark.parametrize(
    "address",
    [
        "",
        "0x1234",
        "0x" + "g" * 40,
        "1" * 42,
        "0x" + "a" * 41,
        " 0x" + "a" * 40,
        "0x52908400098527886E0F7030069857D2E4169EE7".replace("E", "e", 1),  # checksum broken
    ],
)
def test_challenge_refuses_a_bad_address(session: Session, address: str) -> None:
    with pytest.raises(BuyerAuthError, match=r"address|checksum"):
        issue_challenge(session, domain=DOMAIN, uri=URI, chain_id=CHAIN_ID, address=address, now=NOW)


@pytest.mark.parametrize(
    ("domain", "uri"),
    [
        ("", URI),
        ("shop example.com", URI),
        ("https://shop", URI),
        (DOMAIN, "not a uri"),
        (DOMAIN, "https://x/\n"),
    ],
)
def test_challenge_refuses_a_misconfigured_shop(session: Session, domain: str, uri: str) -> None:
    with pytest.raises(ValueError, match="cannot build"):
        issue_challenge(session, domain=domain, uri=uri, chain_id=CHAIN_ID, address="0x" + "a" * 40)


def test_sign_in_opens_a_session_for_the_signer(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    result = sign_in(
        session,
        challenge.message,
        signed(wallet, challenge.message),
        domain=DOMAIN,
        chain_id=CHAIN_ID,
        session_hours=HOURS,
        now=LATER,
    )
    assert result.address == wallet.address
    assert result.expires_at == LATER + timedelta(hours=HOURS)
    assert buyer_address(session, result.token, now=LATER) == wallet.address
    rows = session.exec(select(BuyerSession)).all()
    assert [row.token_hash for row in rows] == [hashlib.sha256(result.token.encode()).hexdigest()]
    assert result.token not in {row.token_hash for row in rows}
    used = session.get(BuyerChallenge, challenge.nonce)
    assert used is not None
    assert used.used_at is not None


def test_unprefixed_and_v_0_1_signatures_are_accepted(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    signature = bytes.fromhex(signed(wallet, challenge.message)[2:])
    low_v = signature[:64] + bytes([signature[64] - 27])
    assert login(session, challenge.message, low_v.hex()) == wallet.address


def test_signature_of_another_account_is_refused(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    with pytest.raises(BuyerAuthError, match="not from"):
        login(session, challenge.message, signed(Account.create(), challenge.message))


def test_message_for_another_domain_is_refused(session: Session, wallet: LocalAccount) -> None:
    challenge = issue_challenge(
        session, domain="evil.example", uri=URI, chain_id=CHAIN_ID, address=wallet.address, now=NOW
    )
    with pytest.raises(BuyerAuthError, match=r"not to shop\.example\.com"):
        login(session, challenge.message, signed(wallet, challenge.message))


def test_message_for_another_chain_is_refused(session: Session, wallet: LocalAccount) -> None:
    challenge = issue_challenge(session, domain=DOMAIN, uri=URI, chain_id=1, address=wallet.address, now=NOW)
    with pytest.raises(BuyerAuthError, match="chain 1;"):
        login(session, challenge.message, signed(wallet, challenge.message))


def test_refusals_do_not_spend_the_nonce(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    with pytest.raises(BuyerAuthError):
        login(session, challenge.message, signed(Account.create(), challenge.message))
    assert login(session, challenge.message, signed(wallet, challenge.message)) == wallet.address


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Sign in to read", "Sign in to drain"),
        ("Chain ID: 31337", "Chain ID: 031337"),
        ("Expiration Time: 2030-01-02T03:14:05Z", "Expiration Time: 2030-01-02T04:14:05Z"),
    ],
)
def test_tampered_message_is_refused(session: Session, wallet: LocalAccount, old: str, new: str) -> None:
    challenge = challenge_for(session, wallet)
    tampered = challenge.message.replace(old, new)
    assert tampered != challenge.message
    with pytest.raises(BuyerAuthError, match="not from"):
        login(session, tampered, signed(wallet, challenge.message))


def test_message_naming_another_address_is_refused(session: Session, wallet: LocalAccount) -> None:
    """A victim's address in a message the attacker signs: the signer must be the named address."""
    victim = Account.create()
    challenge = issue_challenge(
        session, domain=DOMAIN, uri=URI, chain_id=CHAIN_ID, address=victim.address, now=NOW
    )
    with pytest.raises(BuyerAuthError, match=f"not from {victim.address}"):
        login(session, challenge.message, signed(wallet, challenge.message))


def test_expired_challenge_is_refused(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    with pytest.raises(BuyerAuthError, match="expired"):
        login(session, challenge.message, signed(wallet, challenge.message), now=NOW + timedelta(minutes=10))


def test_stored_expiry_holds_without_an_expiration_time(session: Session, wallet: LocalAccount) -> None:
    """A wallet may drop the optional Expiration Time; the stored challenge still expires."""
    challenge = challenge_for(session, wallet)
    message = dataclasses.replace(parse_message(challenge.message), expiration_time=None).text()
    assert "Expiration Time" not in message
    with pytest.raises(BuyerAuthError, match="challenge expired"):
        login(session, message, signed(wallet, message), now=NOW + timedelta(minutes=11))


def test_not_before_and_future_issue_are_refused(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    terms = parse_message(challenge.message)
    not_yet = dataclasses.replace(terms, not_before=LATER + timedelta(minutes=5)).text()
    with pytest.raises(BuyerAuthError, match="not valid yet"):
        login(session, not_yet, signed(wallet, not_yet))
    future = dataclasses.replace(terms, issued_at=LATER + timedelta(minutes=5)).text()
    with pytest.raises(BuyerAuthError, match="future"):
        login(session, future, signed(wallet, future))
    assert login(session, challenge.message, signed(wallet, challenge.message)) == wallet.address


def test_replayed_message_is_refused(engine: Engine, wallet: LocalAccount) -> None:
    with Session(engine) as session:
        challenge = challenge_for(session, wallet)
        signature = signed(wallet, challenge.message)
        assert login(session, challenge.message, signature) == wallet.address
    with Session(engine) as session, pytest.raises(BuyerAuthError, match="already used"):
        login(session, challenge.message, signature, now=LATER + timedelta(seconds=1))
    with Session(engine) as session:
        assert len(session.exec(select(BuyerSession)).all()) == 1


def test_a_stale_read_of_the_nonce_still_accepts_it_once(engine: Engine, wallet: LocalAccount) -> None:
    """Two sign-ins racing on one nonce (PostgreSQL, read committed) both see it unused; the
    conditional update lets one through. A session holding a stale copy of the row plays the loser."""
    with Session(engine) as session:
        challenge = challenge_for(session, wallet)
    signature = signed(wallet, challenge.message)
    with Session(engine, expire_on_commit=False) as loser:
        stale = loser.get(BuyerChallenge, challenge.nonce)
        loser.commit()
        with Session(engine) as winner:
            assert login(winner, challenge.message, signature) == wallet.address
        assert stale is not None
        assert stale.used_at is None
        with pytest.raises(BuyerAuthError, match="already used"):
            login(loser, challenge.message, signature)
    with Session(engine) as session:
        assert len(session.exec(select(BuyerSession)).all()) == 1


def test_unknown_nonce_is_refused(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    forged = dataclasses.replace(parse_message(challenge.message), nonce="NeverIssued123").text()
    with pytest.raises(BuyerAuthError, match="unknown nonce"):
        login(session, forged, signed(wallet, forged))


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "0x",
        "0x1234",
        "0x" + "zz" * 65,
        "0x" + "00" * 65,
        "0x" + "00" * 64 + "1b",
        "0x" + "ff" * 64 + "1c",
        "0x" + "ab" * 64,
        "0x" + "ab" * 66,
        "0X" + "ab" * 65,
    ],
)
def test_malformed_signature_is_refused(session: Session, wallet: LocalAccount, signature: str) -> None:
    challenge = challenge_for(session, wallet)
    with pytest.raises(BuyerAuthError, match="signature"):
        login(session, challenge.message, signature)


@pytest.mark.parametrize("v", [2, 26, 29, 35, 0xFF])
def test_signature_with_a_bad_recovery_id_is_refused(session: Session, wallet: LocalAccount, v: int) -> None:
    challenge = challenge_for(session, wallet)
    good = bytes.fromhex(signed(wallet, challenge.message)[2:])
    with pytest.raises(BuyerAuthError, match="recovery id"):
        login(session, challenge.message, "0x" + (good[:64] + bytes([v])).hex())


def test_non_eip_4361_text_is_refused_by_sign_in(session: Session, wallet: LocalAccount) -> None:
    text = "please sign this"
    with pytest.raises(BuyerAuthError, match="EIP-4361"):
        login(session, text, signed(wallet, text))


def test_session_lookup_and_expiry(session: Session, wallet: LocalAccount) -> None:
    challenge = challenge_for(session, wallet)
    token = sign_in(
        session,
        challenge.message,
        signed(wallet, challenge.message),
        domain=DOMAIN,
        chain_id=CHAIN_ID,
        session_hours=1.5,
        now=LATER,
    ).token
    last_moment = LATER + timedelta(hours=1.5) - timedelta(seconds=1)
    assert buyer_address(session, token, now=last_moment) == wallet.address
    assert buyer_address(session, token, now=last_moment.replace(tzinfo=None)) == wallet.address
    with pytest.raises(BuyerAuthError, match="session expired"):
        buyer_address(session, token, now=LATER + timedelta(hours=1.5))
    with pytest.raises(BuyerAuthError, match="unknown session"):
        buyer_address(session, token + "x", now=LATER)


def test_old_challenges_are_pruned(session: Session, wallet: LocalAccount) -> None:
    old = challenge_for(session, wallet)
    recent = challenge_for(session, wallet, now=NOW + timedelta(minutes=30))
    challenge_for(session, wallet, now=NOW + timedelta(minutes=71))
    assert session.get(BuyerChallenge, old.nonce) is None
    assert session.get(BuyerChallenge, recent.nonce) is not None


# The grammar, on its own.

CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"
VALID = (
    f"example.com:8080 wants you to sign in with your Ethereum account:\n{CHECKSUMMED}\n\n{STATEMENT}\n\n"
    "URI: https://example.com:8080/login?x=1#top\nVersion: 1\nChain ID: 1\nNonce: abcdEFGH1234\n"
    "Issued At: 2030-01-02T03:04:05.678Z"
)


def test_parse_every_term() -> None:
    text = (
        f"https://example.com wants you to sign in with your Ethereum account:\n{CHECKSUMMED}\n\n\n"
        "URI: https://example.com\nVersion: 1\nChain ID: 10\nNonce: abcdEFGH1234\n"
        "Issued At: 2030-01-02T11:04:05+08:00\nExpiration Time: 2030-01-02t03:14:05z\n"
        "Not Before: 2030-01-02T03:00:00Z\nRequest ID: req-1@x\nResources:\n- ipfs://bafy\n- https://x/y"
    )
    terms = parse_message(text)
    assert terms == SiweMessage(
        scheme="https",
        domain="example.com",
        address=CHECKSUMMED,
        statement=None,
        uri="https://example.com",
        chain_id=10,
        nonce="abcdEFGH1234",
        issued_at=NOW,
        expiration_time=NOW + timedelta(minutes=10),
        not_before=datetime(2030, 1, 2, 3, 0, tzinfo=UTC),
        request_id="req-1@x",
        resources=("ipfs://bafy", "https://x/y"),
    )
    assert parse_message(terms.text()) == terms


def test_parse_valid_message() -> None:
    terms = parse_message(VALID)
    assert (terms.domain, terms.statement, terms.scheme) == ("example.com:8080", STATEMENT, None)
    assert terms.issued_at == NOW + timedelta(microseconds=678000)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n", "\r\n"),
        ("Issued At: 2030-01-02T03:04:05.678Z", "Issued At: 2030-01-02T03:04:05.678Z\n"),
        (CHECKSUMMED, CHECKSUMMED.lower()),
        (CHECKSUMMED, CHECKSUMMED[:41]),
        ("Version: 1", "Version: 2"),
        ("Nonce: abcdEFGH1234", "Nonce: abcdEFG"),
        ("Nonce: abcdEFGH1234", "Nonce: abcd-EFGH-1234"),
        ("Chain ID: 1", "Chain ID: one"),
        ("Chain ID: 1", "Chain ID: \u0661"),  # Arabic-Indic digit one
        ("\nIssued At: 2030-01-02T03:04:05.678Z", ""),
        ("2030-01-02T03:04:05.678Z", "2030-01-02 03:04:05Z"),
        ("2030-01-02T03:04:05.678Z", "2030-01-02T03:04:05"),
        ("2030-01-02T03:04:05.678Z", "2030-13-02T03:04:05Z"),
        ("2030-01-02T03:04:05.678Z", "2030-01-02T03:04:05Z\nColour: blue"),
        (STATEMENT, "Sign in \u2014 please"),
        (STATEMENT, "100% safe"),
        (STATEMENT, "line one\nline two"),
        ("example.com:8080 wants", "example.com:8080  wants"),
        ("example.com:8080", "exa mple.com"),
        ("URI: https://example.com:8080/login?x=1#top", "URI: /login"),
        ("URI: https://example.com:8080/login?x=1#top", "URI: https://example.com/a b"),
        ("wants you to sign in", "wants you to log in"),
    ],
)
def test_parse_refuses_what_the_grammar_does_not_allow(old: str, new: str) -> None:
    text = VALID.replace(old, new)
    assert text != VALID
    with pytest.raises(BuyerAuthError):
        parse_message(text)


def test_parse_refuses_an_oversized_message() -> None:
    with pytest.raises(BuyerAuthError, match="EIP-4361"):
        parse_message(VALID.replace(STATEMENT, "x" * 5000))
