"""Sign-In with Ethereum (EIP-4361) for buyers: proving a wallet, so it can read what it paid for.

The shop issues the exact message text with a fresh nonce; the wallet signs it (EIP-191
`personal_sign`); the shop parses what came back against the EIP-4361 grammar, checks every
term it cares about against its own expectations, recovers the signer and accepts each nonce
once. Only externally owned accounts can sign in: contract wallets (EIP-1271) would need a call
to the chain for every sign-in, and a card key is paid from an EOA in practice.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError
from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from liandong.core.errors import InvalidError, UnauthorizedError
from liandong.core.security import token_hash
from liandong.store.models import BuyerChallenge, BuyerSession, as_utc

STATEMENT = "Sign in to read your Liandong orders and keys."
CHALLENGE_TTL = timedelta(minutes=10)
CLOCK_SKEW = timedelta(minutes=1)
"""Slack for "issued in the future" and "not valid yet", for API replicas whose clocks disagree."""
PRUNE_AFTER = timedelta(hours=1)
"""Challenges expired this long ago are deleted; until then a late sign-in is told "expired"."""
NONCE_LENGTH = 16
MAX_MESSAGE_CHARS = 4096
"""EIP-4361 asks relying parties to bound the terms; ours are far shorter than this."""

_NONCE_ALPHABET = string.ascii_letters + string.digits

# RFC 3986 pieces, ASCII only (Python's \d and \w would admit other scripts' digits and letters).
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_HOST = rf"(?:\[[0-9A-Fa-f:.]+\]|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*)"
_AUTHORITY = rf"(?:{_USERINFO}@)?{_HOST}(?::[0-9]*)?"
_HIER_PART = (
    rf"(?://{_AUTHORITY}(?:/{_PCHAR}*)*"  # "//" authority path-abempty
    rf"|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?"  # path-absolute
    rf"|{_PCHAR}+(?:/{_PCHAR}*)*"  # path-rootless
    r"|)"  # path-empty
)
_URI = rf"{_SCHEME}:{_HIER_PART}(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
_STATEMENT = rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*"
_DATE_TIME = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+\-][0-9]{2}:[0-9]{2})"
)

_MESSAGE = re.compile(
    rf"(?:(?P<scheme>{_SCHEME})://)?(?P<domain>{_AUTHORITY})"
    r" wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9A-Fa-f]{40})\n"
    r"\n"
    rf"(?:(?P<statement>{_STATEMENT})\n)?"
    r"\n"
    rf"URI: (?P<uri>{_URI})\n"
    r"Version: 1\n"
    r"Chain ID: (?P<chain_id>[0-9]+)\n"
    r"Nonce: (?P<nonce>[A-Za-z0-9]{8,})\n"
    rf"Issued At: (?P<issued_at>{_DATE_TIME})"
    rf"(?:\nExpiration Time: (?P<expiration_time>{_DATE_TIME}))?"
    rf"(?:\nNot Before: (?P<not_before>{_DATE_TIME}))?"
    rf"(?:\nRequest ID: (?P<request_id>{_PCHAR}*))?"
    rf"(?:\nResources:(?P<resources>(?:\n- {_URI})*))?",
    re.ASCII,
)
_AUTHORITY_RE = re.compile(_AUTHORITY, re.ASCII)
_URI_RE = re.compile(_URI, re.ASCII)
_ADDRESS_RE = re.compile(r"0x[0-9A-Fa-f]{40}", re.ASCII)
_SIGNATURE_RE = re.compile(r"(?:0x)?([0-9A-Fa-f]{130})", re.ASCII)


class BuyerAuthError(UnauthorizedError):
    """Sign-in refused or session not valid; the message says why and is safe to show the buyer."""


class BuyerAddressError(InvalidError, BuyerAuthError):
    """A sign-in challenge asked for something that is not an Ethereum address in EIP-55 form."""


@dataclass(frozen=True)
class SiweMessage:
    """The terms of an EIP-4361 message."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    statement: str | None = None
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    scheme: str | None = None

    def text(self) -> str:
        """The message as EIP-4361 lays it out, byte for byte what the wallet signs."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme else self.domain
        lines = [f"{origin} wants you to sign in with your Ethereum account:", self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            "Version: 1",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_format_time(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_format_time(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_format_time(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines += ["Resources:", *(f"- {resource}" for resource in self.resources)]
        return "\n".join(lines)


@dataclass(frozen=True)
class Challenge:
    message: str
    """The exact text the wallet must sign; any change to it makes the sign-in fail."""
    nonce: str
    expires_at: datetime


@dataclass(frozen=True)
class BuyerLogin:
    token: str
    """The session's secret for the buyer's browser; the table keeps only its hash."""
    address: str
    expires_at: datetime


def _format_time(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    try:
        # The grammar already held; this rejects what it cannot see, such as month 13.
        return as_utc(datetime.fromisoformat(text.upper()))
    except ValueError as exc:
        raise BuyerAuthError(f"{text!r} is not a valid date-time") from exc


def _checksummed(address: str) -> str:
    """The EIP-55 form; a mixed-case address must already be it, as EIP-55 guards against typos."""
    if not _ADDRESS_RE.fullmatch(address):
        raise BuyerAddressError(f"{address!r} is not an Ethereum address (0x and 40 hex digits)")
    checksummed = to_checksum_address(address)
    mixed_case = address[2:] not in (address[2:].lower(), address[2:].upper())
    if mixed_case and address != checksummed:
        raise BuyerAddressError(f"{address} has a wrong EIP-55 checksum (mistyped?)")
    return checksummed


def parse_message(text: str) -> SiweMessage:
    """The terms of `text`, which must match the EIP-4361 grammar exactly (LF line ends, no
    trailing newline, EIP-55 address)."""
    match = _MESSAGE.fullmatch(text) if len(text) <= MAX_MESSAGE_CHARS else None
    if match is None:
        raise BuyerAuthError("the message is not a Sign-In with Ethereum (EIP-4361) message")
    terms = match.groupdict()
    if terms["address"] != to_checksum_address(terms["address"]):
        raise BuyerAuthError("the message's address is not in its EIP-55 checksummed form")
    expiration_time, not_before, resources = terms["expiration_time"], terms["not_before"], terms["resources"]
    return SiweMessage(
        scheme=terms["scheme"],
        domain=terms["domain"],
        address=terms["address"],
        statement=terms["statement"],
        uri=terms["uri"],
        chain_id=int(terms["chain_id"]),
        nonce=terms["nonce"],
        issued_at=_parse_time(terms["issued_at"]),
        expiration_time=_parse_time(expiration_time) if expiration_time else None,
        not_before=_parse_time(not_before) if not_before else None,
        request_id=terms["request_id"],
        resources=tuple(line.removeprefix("- ") for line in resources.split("\n")[1:]) if resources else (),
    )


def issue_challenge(
    session: Session, *, domain: str, uri: str, chain_id: int, address: str, now: datetime | None = None
) -> Challenge:
    """Stores a fresh nonce and returns the message for `address` to sign. `domain` is the shop's
    RFC 3986 authority (host[:port]) as the buyer's browser sees it, `uri` its public address."""
    if not (domain and _AUTHORITY_RE.fullmatch(domain) and _URI_RE.fullmatch(uri)) or chain_id < 1:
        raise ValueError(
            f"cannot build a sign-in message for domain {domain!r}, uri {uri!r}, chain {chain_id}"
        )
    checksummed = _checksummed(address)
    issued_at = as_utc(now).replace(microsecond=0)
    nonce = "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(NONCE_LENGTH))
    expires_at = issued_at + CHALLENGE_TTL
    session.exec(delete(BuyerChallenge).where(col(BuyerChallenge.expires_at) < issued_at - PRUNE_AFTER))
    message = SiweMessage(
        domain=domain,
        address=checksummed,
        statement=STATEMENT,
        uri=uri,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expires_at,
    )
    text = message.text()
    session.add(
        BuyerChallenge(nonce=nonce, issued_at=issued_at, expires_at=expires_at, message_hash=_digest(text))
    )
    session.commit()
    return Challenge(text, nonce, expires_at)


def _digest(message: str) -> str:
    return hashlib.sha256(message.encode()).hexdigest()


def _check_terms(message: SiweMessage, *, domain: str, chain_id: int, now: datetime) -> None:
    # The scheme, when a wallet adds one, is the wallet's own phishing check; the shop has one origin.
    if message.domain.lower() != domain.lower():
        raise BuyerAuthError(f"the message signs in to {message.domain}, not to {domain}")
    if message.chain_id != chain_id:
        raise BuyerAuthError(f"the message is for chain {message.chain_id}; this shop is on chain {chain_id}")
    if message.issued_at > now + CLOCK_SKEW:
        raise BuyerAuthError("the message is issued in the future")
    if message.expiration_time is not None and message.expiration_time <= now:
        raise BuyerAuthError("the message expired: ask for a new sign-in challenge")
    if message.not_before is not None and message.not_before > now + CLOCK_SKEW:
        raise BuyerAuthError("the message is not valid yet")


def _signer(message: str, signature: str) -> str:
    match = _SIGNATURE_RE.fullmatch(signature)
    if match is None:
        raise BuyerAuthError("the signature is not 65 bytes of hex")
    raw = bytes.fromhex(match[1])
    if raw[64] not in (0, 1, 27, 28):
        raise BuyerAuthError("the signature has an invalid recovery id")
    try:
        return str(Account.recover_message(encode_defunct(text=message), signature=raw))
    except (BadSignature, ValidationError, ValueError) as exc:
        raise BuyerAuthError("the signature is not a valid signature") from exc


def _claim_nonce(session: Session, nonce: str, message: str, now: datetime) -> None:
    """Marks the nonce used; the conditional update makes two racing sign-ins accept it once.

    The signed text must be the very message issued with the nonce, byte for byte: a wallet (or a
    page between it and the shop) that rewrote any line of it (URI, domain, statement, resources,
    times) signed something else than what the shop asked for."""
    challenge = session.get(BuyerChallenge, nonce)
    if challenge is None:
        raise BuyerAuthError("unknown nonce: ask for a new sign-in challenge")
    if challenge.used_at is not None:
        raise BuyerAuthError("this sign-in message was already used: ask for a new challenge")
    if as_utc(challenge.expires_at) <= now:
        raise BuyerAuthError("the sign-in challenge expired: ask for a new one")
    if challenge.message_hash is None or not hmac.compare_digest(challenge.message_hash, _digest(message)):
        raise BuyerAuthError("the signed message is not the challenge this shop issued: sign it unchanged")
    claimed = session.connection().execute(
        update(BuyerChallenge)
        .where(col(BuyerChallenge.nonce) == nonce, col(BuyerChallenge.used_at).is_(None))
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise BuyerAuthError("this sign-in message was already used: ask for a new challenge")


def sign_in(
    session: Session,
    message: str,
    signature: str,
    *,
    domain: str,
    chain_id: int,
    session_hours: float,
    now: datetime | None = None,
) -> BuyerLogin:
    """Opens a buyer session for the wallet that signed `message`, a challenge this shop issued.

    The nonce is only spent by a message that passed every other check, so a forged attempt
    cannot burn a buyer's pending challenge. Commits on success, rolls back on refusal.
    """
    moment = as_utc(now)
    try:
        terms = parse_message(message)
        _check_terms(terms, domain=domain, chain_id=chain_id, now=moment)
        if _signer(message, signature) != terms.address:
            raise BuyerAuthError(f"the signature is not from {terms.address}")
        _claim_nonce(session, terms.nonce, message, moment)
    except BuyerAuthError:
        session.rollback()
        raise
    token = secrets.token_urlsafe(32)
    expires_at = moment + timedelta(hours=session_hours)
    session.add(BuyerSession(token_hash=token_hash(token), address=terms.address, expires_at=expires_at))
    session.commit()
    return BuyerLogin(token, terms.address, expires_at)


def buyer_address(session: Session, token: str, now: datetime | None = None) -> str:
    """The EIP-55 address a session token proves, as `ShopOrder.payer` stores payers."""
    row = session.exec(select(BuyerSession).where(BuyerSession.token_hash == token_hash(token))).first()
    if row is None:
        raise BuyerAuthError("unknown session: sign in with your wallet")
    if as_utc(row.expires_at) <= as_utc(now):
        raise BuyerAuthError("the session expired: sign in with your wallet again")
    return row.address
