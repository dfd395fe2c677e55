"""Merchant logins and API tokens, against a real migrated SQLite database and real argon2 hashes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from liandong.core.security import new_token, token_hash
from liandong.services.merchant_auth import (
    API_TOKEN_PREFIX,
    SCOPES,
    AccountError,
    AuthError,
    ScopeError,
    UnknownTokenError,
    authenticate_api_token,
    change_password,
    create_api_token,
    create_merchant,
    list_api_tokens,
    login,
    logout,
    merchant_for_session,
    revoke_api_token,
)
from liandong.store.models import ApiToken, Merchant, MerchantSession
from sqlalchemy import Engine
from sqlmodel import Session, select

PASSWORD = "correct horse battery"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
HOURS = 12.0


@pytest.fixture
def merchant_id(session: Session) -> int:
    merchant = create_merchant(session, "alice", PASSWORD)
    assert merchant.id is not None
    return merchant.id


def _utc(moment: datetime | None) -> datetime | None:
    """Timestamps as read back: aware UTC, or naive UTC from drivers that drop the zone."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


# ------------------------------------------------------------------ security helpers


def test_token_hash_is_sha256_hex_and_new_tokens_are_fresh() -> None:
    assert token_hash("abc") == hashlib.sha256(b"abc").hexdigest()
    first, second = new_token("ld_"), new_token("ld_")
    assert first.startswith("ld_")
    assert first != second
    assert len(new_token()) >= 43  # 32 random bytes, URL-safe base64


# ------------------------------------------------------------------ accounts


def test_password_is_stored_only_as_an_argon2id_hash(session: Session, merchant_id: int) -> None:
    stored = session.get(Merchant, merchant_id)
    assert stored is not None
    assert stored.username == "alice"
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert PasswordHasher().verify(stored.password_hash, PASSWORD)


@pytest.mark.parametrize("username", ["ab", "a" * 65, "Alice", "bad name", "élan", "a/b", ""])
def test_invalid_usernames_are_refused(session: Session, username: str) -> None:
    with pytest.raises(AccountError, match="username"):
        create_merchant(session, username, PASSWORD)
    assert session.exec(select(Merchant)).all() == []


def test_usernames_may_use_digits_dots_dashes_and_underscores(session: Session) -> None:
    assert create_merchant(session, "shop-1.main_", PASSWORD).username == "shop-1.main_"
    assert create_merchant(session, "a" * 64, PASSWORD).id is not None


@pytest.mark.parametrize("password", ["123456789", "", "x" * 1025])
def test_passwords_of_bad_length_are_refused(session: Session, password: str) -> None:
    with pytest.raises(AccountError, match="password"):
        create_merchant(session, "alice", password)


def test_a_taken_username_is_refused_clearly(session: Session, merchant_id: int) -> None:
    with pytest.raises(AccountError, match="'alice' is taken"):
        create_merchant(session, "alice", "another password")
    assert len(session.exec(select(Merchant)).all()) == 1


# ------------------------------------------------------------------ sessions


def test_login_opens_a_session_stored_as_a_hash(session: Session, merchant_id: int) -> None:
    token, expires_at = login(session, "alice", PASSWORD, HOURS, now=NOW)
    assert expires_at == NOW + timedelta(hours=HOURS)
    row = session.exec(select(MerchantSession)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, str(row.id))
    assert row.merchant_id == merchant_id
    assert _utc(row.expires_at) == expires_at
    assert merchant_for_session(session, token, now=NOW).id == merchant_id


def test_login_ignores_case_and_spaces_around_the_username(session: Session, merchant_id: int) -> None:
    token, _ = login(session, "  Alice ", PASSWORD, HOURS, now=NOW)
    assert merchant_for_session(session, token, now=NOW).id == merchant_id


def test_wrong_password_and_unknown_user_get_the_same_refusal(session: Session, merchant_id: int) -> None:
    with pytest.raises(AuthError) as wrong:
        login(session, "alice", PASSWORD + "!", HOURS, now=NOW)
    with pytest.raises(AuthError) as unknown:
        login(session, "mallory", PASSWORD, HOURS, now=NOW)
    assert str(wrong.value) == str(unknown.value) == "wrong username or password"
    assert session.exec(select(MerchantSession)).all() == []


def test_a_session_expires(session: Session, merchant_id: int) -> None:
    token, expires_at = login(session, "alice", PASSWORD, 1.0, now=NOW)
    assert merchant_for_session(session, token, now=expires_at - timedelta(seconds=1)).id == merchant_id
    with pytest.raises(AuthError, match="expired"):
        merchant_for_session(session, token, now=expires_at)


def test_an_unknown_session_token_is_refused(session: Session, merchant_id: int) -> None:
    login(session, "alice", PASSWORD, HOURS, now=NOW)
    with pytest.raises(AuthError, match="unknown session"):
        merchant_for_session(session, new_token(), now=NOW)


def test_logout_ends_only_that_session(session: Session, merchant_id: int) -> None:
    first, _ = login(session, "alice", PASSWORD, HOURS, now=NOW)
    second, _ = login(session, "alice", PASSWORD, HOURS, now=NOW)
    logout(session, first)
    logout(session, first)
    with pytest.raises(AuthError):
        merchant_for_session(session, first, now=NOW)
    assert merchant_for_session(session, second, now=NOW).id == merchant_id


def test_login_prunes_expired_sessions(session: Session, merchant_id: int) -> None:
    login(session, "alice", PASSWORD, 1.0, now=NOW)
    login(session, "alice", PASSWORD, 1.0, now=NOW + timedelta(hours=2))
    assert len(session.exec(select(MerchantSession)).all()) == 1


def test_login_rejects_a_non_positive_duration(session: Session, merchant_id: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        login(session, "alice", PASSWORD, 0, now=NOW)


def test_an_outdated_hash_is_upgraded_at_login(session: Session, merchant_id: int) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    merchant = session.get(Merchant, merchant_id)
    assert merchant is not None
    merchant.password_hash = weak.hash(PASSWORD)
    session.add(merchant)
    session.commit()
    assert PasswordHasher().check_needs_rehash(merchant.password_hash)
    login(session, "alice", PASSWORD, HOURS, now=NOW)
    upgraded = session.get(Merchant, merchant_id)
    assert upgraded is not None
    assert not PasswordHasher().check_needs_rehash(upgraded.password_hash)
    assert PasswordHasher().verify(upgraded.password_hash, PASSWORD)


def test_change_password_checks_the_current_one_and_ends_other_sessions(
    session: Session, merchant_id: int
) -> None:
    current, _ = login(session, "alice", PASSWORD, HOURS, now=NOW)
    other, _ = login(session, "alice", PASSWORD, HOURS, now=NOW)
    with pytest.raises(AuthError, match="current password"):
        change_password(session, merchant_id, "not the password", "a new password")
    with pytest.raises(AccountError, match="at least 10"):
        change_password(session, merchant_id, PASSWORD, "short")
    assert merchant_for_session(session, other, now=NOW).id == merchant_id

    change_password(session, merchant_id, PASSWORD, "a new password", keep_session=current)
    assert merchant_for_session(session, current, now=NOW).id == merchant_id
    with pytest.raises(AuthError):
        merchant_for_session(session, other, now=NOW)
    with pytest.raises(AuthError):
        login(session, "alice", PASSWORD, HOURS, now=NOW)
    assert login(session, "alice", "a new password", HOURS, now=NOW)[0]


# ------------------------------------------------------------------ API tokens


def test_an_api_token_is_shown_once_and_stored_as_a_hash(session: Session, merchant_id: int) -> None:
    plaintext, row = create_api_token(
        session, merchant_id, " CI ", ["orders:read", "stats:read", "orders:read"]
    )
    assert plaintext.startswith(API_TOKEN_PREFIX)
    assert row.prefix == plaintext[:10]
    assert row.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert row.name == "CI"
    assert row.scopes == "orders:read stats:read"
    stored = session.exec(select(ApiToken)).one()
    assert plaintext not in (stored.token_hash, stored.prefix, stored.scopes, stored.name)


def test_an_api_token_opens_requests_within_its_scopes(session: Session, merchant_id: int) -> None:
    plaintext, _ = create_api_token(session, merchant_id, "ci", ["orders:read"])
    found = authenticate_api_token(session, plaintext, "orders:read", now=NOW)
    assert (found.id, found.username) == (merchant_id, "alice")
    with pytest.raises(ScopeError, match="orders:write"):
        authenticate_api_token(session, plaintext, "orders:write", now=NOW)


def test_a_missing_scope_is_an_auth_error_the_api_can_tell_apart() -> None:
    assert issubclass(ScopeError, AuthError)


def test_the_merchant_of_an_api_token_is_readable_after_the_session_closes(
    engine: Engine, merchant_id: int
) -> None:
    with Session(engine) as session:
        plaintext, _ = create_api_token(session, merchant_id, "ci", ["stats:read"])
    with Session(engine) as session:
        found = authenticate_api_token(session, plaintext, "stats:read", now=NOW)
    assert (found.id, found.username) == (merchant_id, "alice")


def test_last_used_at_is_noted_at_most_once_a_minute(session: Session, merchant_id: int) -> None:
    plaintext, row = create_api_token(session, merchant_id, "ci", ["orders:read"])
    assert row.last_used_at is None

    def last_used() -> datetime | None:
        stored = session.exec(select(ApiToken)).one()
        session.refresh(stored)
        return stored.last_used_at

    authenticate_api_token(session, plaintext, "orders:read", now=NOW)
    assert _utc(last_used()) == NOW
    authenticate_api_token(session, plaintext, "orders:read", now=NOW + timedelta(seconds=30))
    assert _utc(last_used()) == NOW
    authenticate_api_token(session, plaintext, "orders:read", now=NOW + timedelta(seconds=61))
    assert _utc(last_used()) == NOW + timedelta(seconds=61)


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        (["orders:read", "orders:delete"], "unknown scope.*orders:delete"),
        ([], "at least one scope"),
        (["admin"], "unknown scope"),
    ],
)
def test_unknown_or_missing_scopes_are_refused(
    session: Session, merchant_id: int, scopes: list[str], message: str
) -> None:
    with pytest.raises(AccountError, match=message):
        create_api_token(session, merchant_id, "ci", scopes)
    assert session.exec(select(ApiToken)).all() == []


def test_scopes_may_be_given_as_one_space_separated_string(session: Session, merchant_id: int) -> None:
    _, row = create_api_token(session, merchant_id, "ci", "stats:read keys:import")
    assert row.scopes == "keys:import stats:read"


def test_every_scope_fits_in_one_token(session: Session, merchant_id: int) -> None:
    plaintext, row = create_api_token(session, merchant_id, "all", SCOPES)
    assert set(row.scopes.split()) == SCOPES
    for scope in SCOPES:
        assert authenticate_api_token(session, plaintext, scope, now=NOW).id == merchant_id


def test_token_names_must_be_given_and_short(session: Session, merchant_id: int) -> None:
    for name in ("", "   ", "x" * 101):
        with pytest.raises(AccountError, match="name"):
            create_api_token(session, merchant_id, name, ["orders:read"])


def test_a_token_for_an_unknown_merchant_is_refused(session: Session) -> None:
    with pytest.raises(AccountError, match="no merchant 42"):
        create_api_token(session, 42, "ci", ["orders:read"])


def test_a_revoked_token_is_refused_as_unauthenticated(session: Session, merchant_id: int) -> None:
    plaintext, row = create_api_token(session, merchant_id, "ci", ["orders:read"])
    assert row.id is not None
    revoked = revoke_api_token(session, merchant_id, row.id, now=NOW)
    assert revoked.revoked_at is not None
    again = revoke_api_token(session, merchant_id, row.id, now=NOW + timedelta(hours=1))
    assert _utc(again.revoked_at) == NOW
    with pytest.raises(AuthError, match="revoked") as refused:
        authenticate_api_token(session, plaintext, "orders:read", now=NOW)
    assert not isinstance(refused.value, ScopeError)


def test_unknown_api_tokens_are_refused(session: Session, merchant_id: int) -> None:
    create_api_token(session, merchant_id, "ci", ["orders:read"])
    for token in (new_token(API_TOKEN_PREFIX), "", "ld_"):
        with pytest.raises(AuthError, match="unknown API token"):
            authenticate_api_token(session, token, "orders:read", now=NOW)


def test_asking_for_a_scope_that_does_not_exist_is_a_programming_error(
    session: Session, merchant_id: int
) -> None:
    plaintext, _ = create_api_token(session, merchant_id, "ci", ["orders:read"])
    with pytest.raises(ValueError, match="not a scope"):
        authenticate_api_token(session, plaintext, "orders:reed", now=NOW)


def test_a_merchant_lists_and_revokes_only_their_own_tokens(session: Session, merchant_id: int) -> None:
    bob = create_merchant(session, "bob", PASSWORD)
    assert bob.id is not None
    _, first = create_api_token(session, merchant_id, "first", ["orders:read"])
    create_api_token(session, merchant_id, "second", ["stats:read"])
    bobs_plaintext, bobs = create_api_token(session, bob.id, "bob's", ["orders:read"])
    assert first.id is not None
    assert bobs.id is not None
    revoke_api_token(session, merchant_id, first.id, now=NOW)

    listed = list_api_tokens(session, merchant_id)
    assert [token.name for token in listed] == ["second", "first"]
    assert [token.revoked_at is not None for token in listed] == [False, True]
    with pytest.raises(UnknownTokenError):
        revoke_api_token(session, merchant_id, bobs.id, now=NOW)
    with pytest.raises(UnknownTokenError):
        revoke_api_token(session, merchant_id, 999, now=NOW)
    assert authenticate_api_token(session, bobs_plaintext, "orders:read", now=NOW).id == bob.id
