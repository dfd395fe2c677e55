"""Bearer secrets: order tokens, sessions, API tokens.

They are 256-bit random values, so a plain SHA-256 is all their stored form needs: nothing can be
guessed from it, and a lookup by hash stays one index probe. Passwords, which can be guessed, are
another matter (see `liandong.services.merchant_auth`).
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32


def new_token(prefix: str = "") -> str:
    """A fresh URL-safe secret; a prefix (e.g. "ld_") lets people and secret scanners tell kinds apart."""
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the database keeps of a secret token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()
