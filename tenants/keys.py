"""Pure key handling: make, parse, hash, verify. Keys look like mc_<prefix>_<secret>."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 8
KEY_START = "mc_"


def hash_key(key: str) -> str:
    # The secret has 256 bits of entropy, so a fast hash is safe (no dictionary to attack).
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def make_key() -> tuple[str, str, str]:
    """A new key, its public prefix and the hash to store."""
    prefix = "".join(secrets.choice(ALPHABET) for _ in range(PREFIX_LENGTH))
    key = f"{KEY_START}{prefix}_{secrets.token_urlsafe(32)}"  # 32 bytes = 256 bits
    return key, prefix, hash_key(key)


def parse_prefix(key: str) -> str | None:
    """The public prefix of a key in our format, else None."""
    if not key.startswith(KEY_START) or len(key) < len(KEY_START) + PREFIX_LENGTH + 2:
        return None
    prefix = key[len(KEY_START) : len(KEY_START) + PREFIX_LENGTH]
    if key[len(KEY_START) + PREFIX_LENGTH] != "_" or any(c not in ALPHABET for c in prefix):
        return None
    return prefix


def verify(key: str, key_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), key_hash)
