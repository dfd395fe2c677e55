"""Sealing card keys to a key pair the buyer's browser made, so they never cross the wire, sit in
a proxy's or the API's log, or rest in a browser cache in the clear.

The browser keeps an X25519 private key that never leaves it and sends the public half with its
request; the shop answers with a box only that private key opens:

    shared = X25519(ephemeral private, recipient public)                       # 32 bytes
    key    = HKDF-SHA256(shared, salt = ephemeral public ‖ recipient public,
                         info = "liandong/key-transport/v1", length = 32)
    ct     = AES-256-GCM(key, nonce = 12 random bytes, aad = order id).encrypt(plaintext)  # ‖ tag

A fresh ephemeral key per box gives forward secrecy on the shop's side; the public keys in the
salt bind the key to this exchange; the order id as AAD means a box for one order does not open
as another's. The AAD is `order_aad(chain_order_id)`: the escrow's 32-byte order id. The box
travels as JSON of unpadded base64url strings:

    {"alg": "X25519-HKDF-SHA256-A256GCM", "epk": …, "nonce": …, "ct": …}

`ct` is the GCM ciphertext with its 16-byte tag appended, the layout WebCrypto uses too.

In the browser (WebCrypto X25519: Chrome 133+, Firefox 130+, Safari 17+), with small helpers
`b64u`/`unb64u` (Uint8Array ⇄ unpadded base64url) and `hexToBytes`:

    const pair = await crypto.subtle.generateKey({name: "X25519"}, false, ["deriveBits"]);
    const myPublic = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    // send b64u(myPublic) with the request; receive `box`
    const epk = unb64u(box.epk);
    const peer = await crypto.subtle.importKey("raw", epk, {name: "X25519"}, false, []);
    const shared = await crypto.subtle.deriveBits({name: "X25519", public: peer}, pair.privateKey, 256);
    const hkdf = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
    const salt = new Uint8Array([...epk, ...myPublic]);
    const info = new TextEncoder().encode("liandong/key-transport/v1");
    const aes = await crypto.subtle.deriveKey({name: "HKDF", hash: "SHA-256", salt, info}, hkdf,
                                              {name: "AES-GCM", length: 256}, false, ["decrypt"]);
    const orderId = hexToBytes(chainOrderId.slice(2));    // the 32 bytes of the escrow's order id
    const plain = await crypto.subtle.decrypt({name: "AES-GCM", iv: unb64u(box.nonce),
                                               additionalData: orderId}, aes, unb64u(box.ct));

`decrypt` rejects (OperationError) when the box was tampered with, sealed to another key or
for another order. Keep the private key non-extractable and make a new pair per page load.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel

from liandong.core.errors import InvalidError

ALG = "X25519-HKDF-SHA256-A256GCM"
INFO = b"liandong/key-transport/v1"
KEY_BYTES = 32
NONCE_BYTES = 12

_HEX_KEY = re.compile(r"0[xX]([0-9A-Fa-f]{64})", re.ASCII)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)
_CHAIN_ORDER_ID = re.compile(r"0x([0-9a-fA-F]{64})", re.ASCII)


class TransportError(InvalidError, ValueError):
    """A box that does not open: tampered with, sealed to another key or for another order. A
    ValueError too, as it always comes from bad input (the API answers 422)."""


class TransportKeyError(TransportError):
    """A key that cannot take part in the exchange; the message says what is wrong with it."""


@dataclass(frozen=True)
class SealedBox:
    ephemeral_public: bytes
    nonce: bytes
    ciphertext: bytes
    """AES-GCM output: the encrypted plaintext followed by the 16-byte tag."""

    def to_json(self) -> dict[str, str]:
        return {
            "alg": ALG,
            "epk": _b64u(self.ephemeral_public),
            "nonce": _b64u(self.nonce),
            "ct": _b64u(self.ciphertext),
        }


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode_base64(text: str) -> bytes | None:
    """The bytes of canonical base64 or base64url text (padding optional but then whole), or None:
    a sloppy spelling would let two different texts name one key."""
    if not (_BASE64URL.fullmatch(text) or _BASE64.fullmatch(text)) or ("=" in text and len(text) % 4):
        return None
    bare = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except binascii.Error:
        return None
    return data if base64.b64encode(data).decode().rstrip("=") == bare else None


def _decode_key(text: str) -> bytes:
    hex_match = _HEX_KEY.fullmatch(text)
    data = bytes.fromhex(hex_match[1]) if hex_match else _decode_base64(text)
    if data is None:
        raise TransportKeyError("the public key is neither base64url, base64 nor 0x-hex")
    return data


def _load_public(raw: bytes) -> X25519PublicKey:
    if len(raw) != KEY_BYTES:
        raise TransportKeyError(f"an X25519 public key has {KEY_BYTES} bytes, got {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def _exchange(private: X25519PrivateKey, public: X25519PublicKey) -> bytes:
    try:
        return private.exchange(public)
    except ValueError as exc:
        # A low-order point makes the shared secret all zeros whatever our key: no secrecy at all
        # (the library refuses it, and so do we).
        raise TransportKeyError("the public key is a low-order point, unusable for X25519") from exc


def parse_public_key(text: str) -> bytes:
    """The 32 raw bytes of an X25519 public key written as base64url, base64 or 0x-hex (what
    WebCrypto's `exportKey("raw", …)` gives, encoded), checked to be usable."""
    raw = _decode_key(text.strip())
    _exchange(X25519PrivateKey.generate(), _load_public(raw))
    return raw


def order_aad(chain_order_id: str) -> bytes:
    """The AAD that binds a box to its order: the escrow's order id as its 32 raw bytes."""
    match = _CHAIN_ORDER_ID.fullmatch(chain_order_id)
    if match is None:
        raise ValueError(f"{chain_order_id!r} is not a 0x-hex bytes32 order id")
    return bytes.fromhex(match[1])


def _box_key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_public + recipient_public, info=INFO)
    return AESGCM(hkdf.derive(shared))


def seal(plaintext: bytes, recipient_public: bytes, aad: bytes) -> SealedBox:
    """Encrypts `plaintext` so that only the holder of `recipient_public`'s private key opens it,
    and only with the same `aad`."""
    recipient = _load_public(recipient_public)
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    key = _box_key(_exchange(ephemeral, recipient), ephemeral_public, recipient_public)
    nonce = secrets.token_bytes(NONCE_BYTES)
    return SealedBox(ephemeral_public, nonce, key.encrypt(nonce, plaintext, aad))


class SealedKeys(BaseModel):
    """An order's keys as the buyer's page receives them, on request or with the `delivered` event."""

    order: str
    box: dict[str, str]
    """The keys as a JSON list, sealed to the buyer's public key (`SealedBox.to_json`)."""
    salt: str
    """With the keys and the order id, recomputes the commitment the escrow holds."""
    commitment: str


def seal_keys(
    keys: list[str], recipient_public: bytes, chain_order_id: str, salt: str, commitment: str
) -> SealedKeys:
    """An order's card keys (in line order) as the buyer's page opens them: a JSON list, sealed to
    the page's key and bound to the order, with the salt and commitment that check them."""
    box = seal(json.dumps(keys).encode(), recipient_public, order_aad(chain_order_id))
    return SealedKeys(order=chain_order_id, box=box.to_json(), salt=salt, commitment=commitment)


def _box_field(box_json: Mapping[str, object], name: str) -> bytes:
    value = box_json.get(name)
    data = _decode_base64(value) if isinstance(value, str) else None
    if data is None:
        raise TransportError(f"the box's {name!r} is missing or not base64url")
    return data


def open_sealed(box_json: Mapping[str, object], recipient_private: bytes, aad: bytes) -> bytes:
    """The plaintext of a box from `seal`, given the recipient's 32-byte private key: the
    reference for the browser's side."""
    if box_json.get("alg") != ALG:
        raise TransportError(f"the box's algorithm is not {ALG}")
    ephemeral_public, nonce = _box_field(box_json, "epk"), _box_field(box_json, "nonce")
    ciphertext = _box_field(box_json, "ct")
    if len(recipient_private) != KEY_BYTES:
        raise TransportKeyError(f"an X25519 private key has {KEY_BYTES} bytes, got {len(recipient_private)}")
    if len(nonce) != NONCE_BYTES:
        raise TransportError(f"the box's nonce has {len(nonce)} bytes, not {NONCE_BYTES}")
    private = X25519PrivateKey.from_private_bytes(recipient_private)
    recipient_public = private.public_key().public_bytes_raw()
    key = _box_key(_exchange(private, _load_public(ephemeral_public)), ephemeral_public, recipient_public)
    try:
        return key.decrypt(nonce, ciphertext, aad)
    except InvalidTag as exc:
        raise TransportError("the box does not open: tampered with, another key or another order") from exc
