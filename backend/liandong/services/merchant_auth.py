"""Merchant authentication: dashboard logins and scoped API tokens.

Passwords are kept as argon2id hashes, because people pick guessable ones and a stolen database
must make each guess expensive. Sessions and API tokens are random 256-bit secrets, so their
SHA-256 is enough and keeps every authenticated request one index lookup.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, select

from liandong.core.errors import (
    ForbiddenError,
    InvalidError,
    NotFoundError,
    TooManyRequestsError,
    UnauthorizedError,
)
from liandong.core.security import new_token, token_hash
from liandong.store.models import ApiToken, Merchant, MerchantSession, as_utc

SCOPES = frozenset(
    {
        "products:read",
        "products:write",
        "keys:import",
        "orders:read",
        "orders:write",
        "stats:read",
        "channels:write",
    }
)
API_TOKEN_PREFIX = "ld_"  # noqa: S105 -- a public marker, not a secret
API_TOKEN_SHOWN_CHARS = 10
"""How much of a token its listing shows: the "ld_" marker and 7 random characters."""
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
"""Argon2 takes any length; the cap only keeps a request from making the server hash megabytes."""
LAST_USED_GRANULARITY = timedelta(minutes=1)
"""`ApiToken.last_used_at` is rewritten at most this often, so a busy integration's reads stay reads."""

_USERNAME = re.compile(r"[a-z0-9_.-]{3,64}", re.ASCII)
_hasher = PasswordHasher()
"""argon2id with the library's defaults (RFC 9106's low-memory profile); when a later version
raises them, hashes are upgraded at the next successful login."""
_LOGIN_REFUSED = "wrong username or password"
MAX_LOCKOUT_SECONDS = 3600.0


class AuthError(UnauthorizedError):
    """Not authenticated: a wrong password, unknown, expired or revoked credentials."""


class CredentialsError(AuthError):
    """No valid dashboard session or API token came with the request: the answer names the
    scheme that proves a merchant (`WWW-Authenticate: Bearer`)."""

    challenge = "Bearer"


class AccountLockedError(TooManyRequestsError, AuthError):
    """Too many wrong passwords for this account in a row: no password is checked until `retry_after`
    seconds have passed (the API answers 429 with Retry-After)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "too many failed log-ins for this account; try again in {seconds} s")


class ScopeError(ForbiddenError, AuthError):
    """Authenticated, but the API token lacks the scope the request needs (the API answers 403)."""


class AccountError(InvalidError, ValueError):
    """A request to create or change an account or token is invalid; the message says why."""


class UnknownTokenError(NotFoundError, AccountError):
    """No API token with this id belongs to the merchant."""


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify unknown usernames against, so they take as long to refuse as wrong passwords."""
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _commit_detached(session: Session, row: SQLModel) -> None:
    """Commits and hands `row` back loaded but detached. Reading an expired row would begin a new
    transaction, which on SQLite (BEGIN IMMEDIATE) holds the write lock until the session closes."""
    session.flush()
    session.expunge(row)
    session.commit()


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")


def create_merchant(session: Session, username: str, password: str) -> Merchant:
    """Adds a dashboard login; commits."""
    if not _USERNAME.fullmatch(username):
        raise AccountError("the username must be 3 to 64 characters of a-z, 0-9, '_', '.' or '-'")
    _check_password(password)
    if session.exec(select(Merchant.id).where(Merchant.username == username)).first() is not None:
        raise AccountError(f"the username {username!r} is taken")
    merchant = Merchant(username=username, password_hash=_hasher.hash(password))
    session.add(merchant)
    try:
        _commit_detached(session, merchant)
    except IntegrityError as error:  # created by someone else since the check above
        session.rollback()
        raise AccountError(f"the username {username!r} is taken") from error
    return merchant


def login(
    session: Session,
    username: str,
    password: str,
    hours: float,
    *,
    now: datetime | None = None,
    lockout_after: int = 5,
    lockout_seconds: float = 30.0,
) -> tuple[str, datetime]:
    """Opens a dashboard session; returns its token (for the cookie) and when it expires. Commits.

    Unknown usernames and wrong passwords get the same answer after the same work, so the login
    form does not tell which usernames exist. Per account, whatever address the guesses come
    from: after `lockout_after` wrong passwords in a row the account is locked for
    `lockout_seconds`, doubled by each further failure (at most an hour); while locked no password
    is checked (AccountLockedError). A correct password once the lock is over resets the count.
    """
    if hours <= 0:
        raise ValueError("a session must last a positive number of hours")
    moment = as_utc(now)
    merchant = session.exec(select(Merchant).where(Merchant.username == username.strip().lower())).first()
    if merchant is None:
        _verify(_dummy_hash(), password)
        raise AuthError(_LOGIN_REFUSED)
    assert merchant.id is not None
    if merchant.locked_until is not None and as_utc(merchant.locked_until) > moment:
        raise AccountLockedError((as_utc(merchant.locked_until) - moment).total_seconds())
    if not _verify(merchant.password_hash, password):
        _count_failure(session, merchant.id, moment, lockout_after, lockout_seconds)
        raise AuthError(_LOGIN_REFUSED)
    merchant.failed_logins, merchant.locked_until = 0, None
    if _hasher.check_needs_rehash(merchant.password_hash):
        merchant.password_hash = _hasher.hash(password)
        session.add(merchant)
    assert merchant.id is not None
    token = new_token()
    expires_at = moment + timedelta(hours=hours)
    session.exec(delete(MerchantSession).where(col(MerchantSession.expires_at) <= moment))
    session.add(MerchantSession(token_hash=token_hash(token), merchant_id=merchant.id, expires_at=expires_at))
    session.commit()
    return token, expires_at


def _count_failure(
    session: Session, merchant_id: int, moment: datetime, lockout_after: int, lockout_seconds: float
) -> None:
    """Counts a wrong password in one UPDATE (racing guesses each count) and locks past the limit."""
    session.rollback()
    session.connection().execute(
        update(Merchant)
        .where(col(Merchant.id) == merchant_id)
        .values(failed_logins=col(Merchant.failed_logins) + 1)
    )
    failures = session.exec(select(Merchant.failed_logins).where(Merchant.id == merchant_id)).one()
    if failures >= lockout_after:
        seconds = min(MAX_LOCKOUT_SECONDS, lockout_seconds * 2 ** min(failures - lockout_after, 20))
        session.connection().execute(
            update(Merchant)
            .where(col(Merchant.id) == merchant_id)
            .values(locked_until=moment + timedelta(seconds=seconds))
        )
    session.commit()


def merchant_for_session(session: Session, token: str, *, now: datetime | None = None) -> Merchant:
    """The merchant a dashboard session token belongs to."""
    found = session.exec(
        select(Merchant, MerchantSession.expires_at)
        .join(MerchantSession, col(MerchantSession.merchant_id) == col(Merchant.id))
        .where(MerchantSession.token_hash == token_hash(token))
    ).first()
    if found is None:
        raise CredentialsError("not logged in: unknown session")
    merchant, expires_at = found
    if as_utc(expires_at) <= as_utc(now):
        raise CredentialsError("the session expired: log in again")
    return merchant


def logout(session: Session, token: str) -> None:
    """Ends a dashboard session (an unknown one is already ended); commits."""
    session.exec(delete(MerchantSession).where(col(MerchantSession.token_hash) == token_hash(token)))
    session.commit()


def change_password(
    session: Session,
    merchant_id: int,
    current_password: str,
    new_password: str,
    *,
    keep_session: str | None = None,
) -> None:
    """Replaces the password and ends every dashboard session but `keep_session` (the one asking),
    so a session opened with a leaked password dies with it. API tokens stay: they are revoked on
    their own. Commits."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None or not _verify(merchant.password_hash, current_password):
        raise AuthError("the current password is wrong")
    _check_password(new_password)
    merchant.password_hash = _hasher.hash(new_password)
    session.add(merchant)
    others = delete(MerchantSession).where(col(MerchantSession.merchant_id) == merchant_id)
    if keep_session is not None:
        others = others.where(col(MerchantSession.token_hash) != token_hash(keep_session))
    session.exec(others)
    session.commit()


def _scope_list(scopes: Iterable[str]) -> str:
    # A bare string would otherwise be read one character at a time.
    wanted = set(scopes.split() if isinstance(scopes, str) else scopes)
    if not wanted:
        raise AccountError("an API token needs at least one scope")
    unknown = wanted - SCOPES
    if unknown:
        raise AccountError(
            f"unknown scope(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(SCOPES))}"
        )
    return " ".join(sorted(wanted))


def _within(scopes: str, allowed: Iterable[str] | None, doing: str) -> None:
    beyond = set(scopes.split()) - set(SCOPES if allowed is None else allowed)
    if beyond:
        raise ScopeError(f"cannot {doing} a token with scope(s) you do not hold: {', '.join(sorted(beyond))}")


def create_api_token(
    session: Session,
    merchant_id: int,
    name: str,
    scopes: Iterable[str],
    *,
    allowed: Iterable[str] | None = None,
) -> tuple[str, ApiToken]:
    """A new API token: its plaintext (`ld_…`, shown this once, never stored) and its row. Commits.

    `allowed` is what the creator holds (default: every scope, a dashboard session or the CLI); a
    token with more is refused with ScopeError."""
    scope_list = _scope_list(scopes)
    _within(scope_list, allowed, "create")
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise AccountError("the token's name must have 1 to 100 characters")
    if session.get(Merchant, merchant_id) is None:
        raise AccountError(f"no merchant {merchant_id}")
    plaintext = new_token(API_TOKEN_PREFIX)
    row = ApiToken(
        merchant_id=merchant_id,
        name=name,
        prefix=plaintext[:API_TOKEN_SHOWN_CHARS],
        token_hash=token_hash(plaintext),
        scopes=scope_list,
    )
    session.add(row)
    _commit_detached(session, row)
    return plaintext, row


def list_api_tokens(session: Session, merchant_id: int) -> list[ApiToken]:
    """The merchant's tokens, revoked ones included, newest first."""
    query = select(ApiToken).where(ApiToken.merchant_id == merchant_id).order_by(col(ApiToken.id).desc())
    return list(session.exec(query))


def revoke_api_token(
    session: Session,
    merchant_id: int,
    token_id: int,
    *,
    allowed: Iterable[str] | None = None,
    now: datetime | None = None,
) -> ApiToken:
    """Revokes one of the merchant's tokens for good; revoking it again keeps the first date. Commits.

    `allowed` as for `create_api_token`: a token with scopes beyond it is refused (ScopeError)."""
    row = session.get(ApiToken, token_id)
    if row is None or row.merchant_id != merchant_id:
        raise UnknownTokenError(f"no API token {token_id}")
    _within(row.scopes, allowed, "revoke")
    if row.revoked_at is None:
        row.revoked_at = as_utc(now)
    _commit_detached(session, row)
    return row


def token_scopes(session: Session, token: str) -> frozenset[str]:
    """The scopes an API token holds (none for an unknown or revoked one)."""
    row = session.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).first()
    if row is None or row.revoked_at is not None:
        return frozenset()
    return frozenset(row.scopes.split())


def authenticate_api_token(
    session: Session, token: str, required_scope: str, *, now: datetime | None = None
) -> Merchant:
    """The merchant behind an API token that holds `required_scope`; notes when the token was used."""
    if required_scope not in SCOPES:
        raise ValueError(f"{required_scope!r} is not a scope")
    found = session.exec(
        select(ApiToken, Merchant)
        .join(Merchant, col(Merchant.id) == col(ApiToken.merchant_id))
        .where(ApiToken.token_hash == token_hash(token))
    ).first()
    if found is None:
        raise CredentialsError("unknown API token")
    row, merchant = found
    if row.revoked_at is not None:
        raise CredentialsError("this API token was revoked")
    if required_scope not in row.scopes.split():
        raise ScopeError(f"this API token does not have the {required_scope} scope")
    moment = as_utc(now)
    if row.last_used_at is None or moment - as_utc(row.last_used_at) >= LAST_USED_GRANULARITY:
        row.last_used_at = moment
    _commit_detached(session, merchant)
    return merchant
