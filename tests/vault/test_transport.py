"""Card keys sealed to the buyer's browser key: only that key opens them, only for their order."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from liandong.vault.transport import (
    ALG,
    TransportError,
    TransportKeyError,
    open_sealed,
    order_aad,
    parse_public_key,
    seal,
)

ORDER = "0x" + "ab" * 32
OTHER_ORDER = "0x" + "cd" * 32
KEYS = json.dumps(["AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"]).encode()
P = 2**255 - 19


def recipient() -> tuple[bytes, bytes]:
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip_bit(box: dict[str, str], field: str, index: int = 0) -> dict[str, str]:
    data = bytearray(unb64u(box[field]))
    data[index] ^= 0x01
    return {**box, field: b64u(bytes(data))}


def test_round_trip() -> None:
    private, public = recipient()
    box = seal(KEYS, public, order_aad(ORDER)).to_json()
    assert open_sealed(box, private, order_aad(ORDER)) == KEYS


def test_box_json_is_unpadded_base64url_without_the_plaintext() -> None:
    _, public = recipient()
    box = seal(KEYS, public, order_aad(ORDER))
    as_json = box.to_json()
    assert set(as_json) == {"alg", "epk", "nonce", "ct"}
    assert as_json["alg"] == ALG == "X25519-HKDF-SHA256-A256GCM"
    for field in ("epk", "nonce", "ct"):
        assert set(as_json[field]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert unb64u(as_json["epk"]) == box.ephemeral_public
    assert unb64u(as_json["nonce"]) == box.nonce
    assert unb64u(as_json["ct"]) == box.ciphertext
    assert (len(box.ephemeral_public), len(box.nonce), len(box.ciphertext)) == (32, 12, len(KEYS) + 16)
    assert b"AAAA-BBBB" not in box.ciphertext
    assert "AAAA-BBBB" not in json.dumps(as_json)


def test_matches_the_documented_construction() -> None:
    """What the module docstring tells the browser to do, step by step, opens the box."""
    private_raw, public = recipient()
    box = seal(KEYS, public, order_aad(ORDER)).to_json()
    epk = unb64u(box["epk"])
    shared = X25519PrivateKey.from_private_bytes(private_raw).exchange(X25519PublicKey.from_public_bytes(epk))
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=epk + public, info=b"liandong/key-transport/v1"
    ).derive(shared)
    plain = AESGCM(key).decrypt(unb64u(box["nonce"]), unb64u(box["ct"]), bytes.fromhex("ab" * 32))
    assert plain == KEYS


def test_wrong_private_key_fails() -> None:
    _, public = recipient()
    stranger, _ = recipient()
    box = seal(KEYS, public, order_aad(ORDER)).to_json()
    with pytest.raises(TransportError, match="does not open"):
        open_sealed(box, stranger, order_aad(ORDER))


def test_box_of_another_order_fails() -> None:
    private, public = recipient()
    box = seal(KEYS, public, order_aad(ORDER)).to_json()
    with pytest.raises(TransportError, match="does not open"):
        open_sealed(box, private, order_aad(OTHER_ORDER))


@pytest.mark.parametrize(("field", "index"), [("ct", 0), ("ct", -1), ("nonce", 0), ("epk", 5)])
def test_tampered_box_fails(field: str, index: int) -> None:
    private, public = recipient()
    box = seal(KEYS, public, order_aad(ORDER)).to_json()
    with pytest.raises(TransportError):
        open_sealed(flip_bit(box, field, index), private, order_aad(ORDER))


def test_truncated_ciphertext_fails() -> None:
    private, public = recipient()
    box = seal(KEYS, public, order_aad(ORDER)).to_json()
    with pytest.raises(TransportError):
        open_sealed({**box, "ct": b64u(unb64u(box["ct"])[:-1])}, private, order_aad(ORDER))


@pytest.mark.parametrize(
    "change",
    [{"alg": "A256GCM"}, {"epk": "not base64!"}, {"nonce": b64u(bytes(8))}, {"ct": None}],
)
def test_malformed_box_is_refused(change: dict[str, object]) -> None:
    private, public = recipient()
    box: dict[str, object] = {**seal(KEYS, public, order_aad(ORDER)).to_json(), **change}
    with pytest.raises(TransportError):
        open_sealed(box, private, order_aad(ORDER))


def test_every_seal_uses_a_fresh_ephemeral_key_and_nonce() -> None:
    private, public = recipient()
    boxes = [seal(KEYS, public, order_aad(ORDER)) for _ in range(20)]
    assert len({box.ephemeral_public for box in boxes}) == 20
    assert len({box.nonce for box in boxes}) == 20
    assert len({box.ciphertext for box in boxes}) == 20
    assert all(open_sealed(box.to_json(), private, order_aad(ORDER)) == KEYS for box in boxes)


def test_parse_public_key_accepts_each_encoding() -> None:
    raw = bytes.fromhex("fbff" * 16)  # encodes with "+" and "/" in base64, "-" and "_" in base64url
    standard = base64.b64encode(raw).decode()
    assert {"+", "/"} <= set(standard)
    for text in (
        b64u(raw),
        base64.urlsafe_b64encode(raw).decode(),
        standard,
        standard.rstrip("="),
        "0x" + raw.hex(),
        "0x" + raw.hex().upper(),
        f"  {b64u(raw)}\n",
    ):
        assert parse_public_key(text) == raw, text


def test_parsed_browser_key_seals() -> None:
    private, public = recipient()
    box = seal(KEYS, parse_public_key(b64u(public)), order_aad(ORDER))
    assert open_sealed(box.to_json(), private, order_aad(ORDER)) == KEYS


def low_order(u: int) -> bytes:
    return u.to_bytes(32, "little")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "neither"),
        ("not a key", "neither"),
        (b64u(bytes(16)), "32 bytes, got 16"),
        (b64u(bytes(range(33))), "32 bytes, got 33"),
        ("0x" + "ab" * 31, "32 bytes, got 48"),  # too short for hex, so read as base64
        ("0x" + "zz" * 32, "neither"),
        ("ab" * 32, "32 bytes, got 48"),  # hex without 0x reads as base64
        (b64u(bytes.fromhex("fbff" * 16)).replace("_", "/", 1), "neither"),  # mixed alphabets
        (b64u(bytes(range(32)))[:-1] + "B", "neither"),  # unused bits set: not canonical
        (b64u(bytes(range(32))) + "==", "neither"),  # wrong padding
        (b64u(low_order(0)), "low-order"),
        (b64u(low_order(1)), "low-order"),
        (b64u(low_order(P - 1)), "low-order"),
    ],
)
def test_parse_public_key_rejects(text: str, reason: str) -> None:
    with pytest.raises(TransportKeyError, match=reason):
        parse_public_key(text)


def test_seal_refuses_unusable_raw_keys() -> None:
    with pytest.raises(TransportKeyError, match="low-order"):
        seal(KEYS, low_order(0), order_aad(ORDER))
    with pytest.raises(TransportKeyError, match="32 bytes"):
        seal(KEYS, bytes(31), order_aad(ORDER))


def test_open_refuses_a_short_private_key() -> None:
    _, public = recipient()
    with pytest.raises(TransportKeyError):
        open_sealed(seal(KEYS, public, order_aad(ORDER)).to_json(), bytes(31), order_aad(ORDER))


def test_order_aad_is_the_escrow_order_id() -> None:
    assert order_aad(ORDER) == bytes.fromhex("ab" * 32)
    assert order_aad(ORDER.upper().replace("0X", "0x")) == bytes.fromhex("ab" * 32)
    for bad in ("ab" * 32, "0x" + "ab" * 31, "0x" + "zz" * 32, ""):
        with pytest.raises(ValueError, match="order id"):
            order_aad(bad)


def test_errors_are_value_errors_for_the_api() -> None:
    """The API answers ValueError with 422; a bad key from a browser must never be a 500."""
    with pytest.raises(ValueError, match="neither"):
        parse_public_key("not a key")
