"""The API key format and its keyed hash.

A key is ``ctx_<8-char lookup prefix>_<43-char urlsafe secret>``: 256 random bits, a fixed
recognisable start (secret scanners can match it) and a prefix to find the row by. Only
HMAC-SHA256(API_KEY_PEPPER, key) is stored: a fast keyed hash is right for a random 256-bit
secret (nothing to guess), and a database leak without the pepper verifies nothing.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string

KEY_PATTERN = re.compile(r"ctx_([a-z0-9]{8})_[A-Za-z0-9_-]{43}")
KEY_EXAMPLE = "ctx_4xq7m2pa_Jp0yb2Qn7Hk3Wc9Lr5Tz1Vd8Fs6Gx4Ma2Ne0Ub3Yo7K"
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def generate_key() -> tuple[str, str]:
    """A new (prefix, key)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    return prefix, f"ctx_{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    match = KEY_PATTERN.fullmatch(key)
    return match.group(1) if match else None


def key_hash(pepper: bytes, key: str) -> str:
    return hmac.digest(pepper, key.encode(), "sha256").hex()
