"""The formats of a client's id and secret, and the secret's keyed hash.

A client id is ``ctxc_`` and 20 lowercase letters and digits (public: it names the client
in logs and tokens); a secret is ``ctxs_`` and 43 urlsafe characters (256 random bits, a
fixed start secret scanners can match). Only HMAC-SHA256(API_KEY_PEPPER, secret) is stored,
as for API keys: a fast keyed hash is right for a random 256-bit secret.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string

import flask

CLIENT_ID_PATTERN = re.compile(r"ctxc_[a-z0-9]{20}")
SECRET_PATTERN = re.compile(r"ctxs_[A-Za-z0-9_-]{43}")
CLIENT_ID_EXAMPLE = "ctxc_m8x7c1n4b6z9aak5v3q2"
# bandit B105 / ruff S105 read this as a password: it is the documentation's example.
SECRET_EXAMPLE = "ctxs_Jp0yb2Qn7Hk3Wc9Lr5Tz1Vd8Fs6Gx4Ma2Ne0Ub3Yo7K"  # noqa: S105  # nosec B105
_ALPHABET = string.ascii_lowercase + string.digits


def new_client_id() -> str:
    return "ctxc_" + "".join(secrets.choice(_ALPHABET) for _ in range(20))


def new_secret() -> str:
    return "ctxs_" + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    pepper = str(flask.current_app.config["API_KEY_PEPPER"]).encode()
    return hmac.digest(pepper, secret.encode(), "sha256").hex()


def secret_matches(secret: object, stored_hash: str) -> bool:
    """Constant-time check of a presented secret; anything malformed is simply wrong."""
    if not isinstance(secret, str) or not SECRET_PATTERN.fullmatch(secret):
        return False
    return hmac.compare_digest(secret_hash(secret), stored_hash)
