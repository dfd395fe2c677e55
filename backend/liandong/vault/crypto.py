"""Envelope encryption of card keys, and the commitment that records a delivery on-chain.

A master key (kept outside the database) wraps one random data key per product; each data key
encrypts that product's card keys. A rotation (`vault/rotation.py`) issues each product a new data
key (its next *generation*), re-encrypts the stock with it in batches and then deletes the old
generation, so a master key that leaked before the rotation opens nothing in a later dump.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils.crypto import keccak

from liandong.core.config import Settings
from liandong.core.errors import LiandongError
from liandong.store.db import PRIVATE_DIR, make_private

KEY_BYTES = 32
NONCE_BYTES = 12
FINGERPRINT_INFO = b"liandong card-key fingerprint"


class VaultError(LiandongError):
    """A key or ciphertext the vault cannot use (the shop's own failure, no caller's); never carries
    plaintext in its message."""


def _data_key_aad(product_id: int) -> bytes:
    # Binds a wrapped data key to its product, so copying the row to another product fails.
    return b"liandong data-key product:%d" % product_id


def _card_key_aad(product_id: int) -> bytes:
    # Binds a card-key ciphertext to its product, so a key cannot be moved to another product's stock.
    return b"liandong card-key product:%d" % product_id


def _seal(key: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + key.encrypt(nonce, plaintext, aad)


def _open(key: AESGCM, sealed: bytes, aad: bytes) -> bytes:
    return key.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


@dataclass(frozen=True)
class MasterKey:
    """The key that wraps data keys; lives in a file or a secret store, never in the database."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise VaultError(f"a master key has {KEY_BYTES} bytes, got {len(self.secret)}")

    @property
    def key_id(self) -> str:
        """Names the key in `DataKey.master_key_id`, so a keyring knows which key unwraps a row."""
        return hashlib.sha256(self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            return cls(base64.b64decode(text.strip(), validate=True))
        except binascii.Error as error:
            raise VaultError("the master key is not valid base64") from error

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode("ascii")


@dataclass(frozen=True)
class Keyring:
    """Wraps with the primary key and unwraps with any known key, so that nodes which have not yet
    reloaded, or rows not yet rewrapped, keep working while the master key is rotated."""

    primary: MasterKey
    previous: tuple[MasterKey, ...] = ()

    def key_ids(self) -> frozenset[str]:
        return frozenset(key.key_id for key in (self.primary, *self.previous))

    def wrap(self, product_id: int, data_key: bytes) -> bytes:
        return self.seal(data_key, _data_key_aad(product_id))

    def unwrap(self, product_id: int, wrapped_key: bytes, master_key_id: str) -> bytes:
        return self.open(
            wrapped_key, master_key_id, _data_key_aad(product_id), f"the data key of product {product_id}"
        )

    def seal(self, secret: bytes, aad: bytes) -> bytes:
        """`secret` sealed by the primary key, bound to `aad` (what the secret belongs to)."""
        return _seal(AESGCM(self.primary.secret), secret, aad)

    def open(self, sealed: bytes, master_key_id: str, aad: bytes, what: str) -> bytes:
        """Opens what `seal` sealed with the key `master_key_id`; `what` names it in errors."""
        for key in (self.primary, *self.previous):
            if key.key_id == master_key_id:
                try:
                    return _open(AESGCM(key.secret), sealed, aad)
                except InvalidTag as error:
                    raise VaultError(f"{what} does not unwrap") from error
        raise VaultError(f"{what} is wrapped by master key {master_key_id}, not known here")


class ProductKey:
    """A product's unwrapped data key with the ciphers derived from it, set up once so that bulk
    imports pay only for the per-key AES-GCM and HMAC."""

    def __init__(self, product_id: int, data_key: bytes, generation: int = 1) -> None:
        self.product_id = product_id
        self.generation = generation
        """Which of the product's data keys this is (`datakey.generation`, `cardkey.key_generation`)."""
        self._aead = AESGCM(data_key)
        self._aad = _card_key_aad(product_id)
        # Derived from the data key, not the master key, so fingerprints survive master rotation;
        # HKDF keeps the HMAC key independent of the encryption key.
        self._fingerprint_key = HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=FINGERPRINT_INFO
        ).derive(data_key)

    def encrypt(self, plaintext: str) -> bytes:
        return _seal(self._aead, plaintext.encode("utf-8"), self._aad)

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return _open(self._aead, ciphertext, self._aad).decode("utf-8")
        except InvalidTag as error:
            raise VaultError(f"a card key does not decrypt for product {self.product_id}") from error

    def fingerprint(self, plaintext: str) -> str:
        """A keyed hash to spot duplicates without decrypting; keyed, so the database alone does
        not allow guessing keys from it."""
        return hmac.digest(self._fingerprint_key, plaintext.encode("utf-8"), "sha256").hex()


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def new_salt() -> bytes:
    """The per-order salt of a delivery commitment: hides the keys from anyone guessing them."""
    return secrets.token_bytes(32)


def delivery_commitment(order_id: bytes, salt: bytes, keys: Sequence[str]) -> bytes:
    """keccak256(orderId ‖ salt ‖ keccak256(keccak256(key₁) ‖ … ‖ keccak256(keyₙ))), the escrow's
    `bytes32 commitment`: the buyer (who has the keys and the salt) or an auditor can recompute it,
    while the chain learns nothing about the keys. Order matters: it is the order of delivery."""
    if len(order_id) != 32 or len(salt) != 32:
        raise ValueError("order id and salt must be 32 bytes each")
    keys_hash = keccak(b"".join(keccak(key.encode("utf-8")) for key in keys))
    return keccak(order_id + salt + keys_hash)


def previous_key_file(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + ".previous")


def _temp_key_file(path: Path, key: MasterKey) -> Path:
    """Writes `key` to a fresh 0600 file next to `path` (same file system, for rename and link)."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key.to_base64() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return Path(name)


def write_key_file(path: Path, key: MasterKey) -> None:
    """Replaces `path` atomically: a reader sees the old key or the new one, never half a key."""
    temp = _temp_key_file(path, key)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _create_key_file(path: Path) -> MasterKey:
    """Creates the key file unless another process just did, and returns the key that won: a link
    fails if the name exists, so two nodes starting together cannot end up with different keys."""
    key = MasterKey.generate()
    temp = _temp_key_file(path, key)
    try:
        os.link(temp, path)
    except FileExistsError:
        return read_key_file(path)
    finally:
        temp.unlink()
    return key


def read_key_file(path: Path) -> MasterKey:
    return MasterKey.from_base64(path.read_text(encoding="ascii"))


def load_keyring(settings: Settings) -> Keyring:
    """The keyring from `LIANDONG_MASTER_KEY`, or else from the key file (created on first use)
    and the `.previous` file that a rotation leaves behind."""
    if settings.master_key:
        return Keyring(MasterKey.from_base64(settings.master_key.get_secret_value()))
    path = settings.resolved_master_key_file
    previous_path = previous_key_file(path)
    for key_file in (path, previous_path):  # an older version, or a hand-made file, may be 0644
        make_private(key_file)
    primary = read_key_file(path) if path.exists() else _create_key_file(path)
    previous = (read_key_file(previous_path),) if previous_path.exists() else ()
    return Keyring(primary, previous)
