"""Tokens signed as the service signs them, or as a forger would try."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ctxcloud.signing_keys import PrivateKey


def service_key(app) -> PrivateKey:
    """The app's active signing key (recorded as such on first use)."""
    with app.app_context():
        return app.extensions["ctxcloud"].signing_keys.signing_key()


def sign(app, claims: dict, key: Any = None, algorithm: str | None = None, **kw) -> str:
    """`claims` signed with the app's active key and its kid, as the service would; with
    `key`, by that key instead (a str or bytes: an HS256 secret) and no kid."""
    if key is None:
        active = service_key(app)
        headers = {"kid": active.kid, **kw.pop("headers", {})}
        return jwt.encode(
            claims, active.key, algorithm=algorithm or active.algorithm, headers=headers, **kw
        )
    return jwt.encode(claims, key, algorithm=algorithm or "HS256", **kw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def json64(data: Any) -> str:
    return _b64(json.dumps(data).encode())


def hs256_raw(claims: dict, key: bytes, header: dict | None = None) -> str:
    """HS256 by hand: PyJWT refuses to HMAC with a PEM key, which is the whole attack."""
    signing_input = f"{json64(header or {'alg': 'HS256', 'typ': 'JWT'})}.{json64(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def public_pem(app) -> bytes:
    """The active key's public half as PEM: what algorithm confusion signs with."""
    return (
        service_key(app)
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def stranger_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())
