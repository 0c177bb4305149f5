"""flask-jwt-extended for every token the service issues, signed by the signing keys.

The core owns the one JWTManager of an app: any plugin that issues or checks first-party
tokens (``flask_jwt_extended.create_access_token``, ``decode_token``) gets them signed by the
active key, with its ``kid`` in the header, and checked against the active and retired keys
only, with the one configured algorithm. Under the HS256 opt-in (CTXCLOUD_JWT_ALGORITHM=HS256)
they are signed with CTXCLOUD_JWT_SECRET_KEY instead, and no key is published.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import flask
import jwt
from flask_jwt_extended import JWTManager

from ctxcloud.settings import ConfigError
from ctxcloud.signing_keys import (
    ALGORITHMS,
    HS256,
    LEEWAY_SECONDS,
    PrivateKey,
    SigningKeys,
    parse_signing_keys,
)

__all__ = ["init_token_signing", "retirement_window"]

_REQUEST_KEY = "ctxcloud_signing_key"  # flask.g: one key for a token's header and signature


def init_token_signing(app: flask.Flask) -> SigningKeys | None:
    """Set flask-jwt-extended up on `app`; the signing keys, or None under HS256."""
    config = app.config
    algorithm = config.get("JWT_ALGORITHM") or ALGORITHMS[0]
    if algorithm not in (*ALGORITHMS, HS256):
        raise ConfigError(
            f"CTXCLOUD_JWT_ALGORITHM must be one of {', '.join((*ALGORITHMS, HS256))}, "
            f"not {algorithm!r}"
        )
    config["JWT_ALGORITHM"] = algorithm
    config["JWT_DECODE_ALGORITHMS"] = [algorithm]  # never another: no algorithm confusion
    config.setdefault("JWT_TOKEN_LOCATION", ("headers",))
    config.setdefault("JWT_COOKIE_CSRF_PROTECT", False)  # no cookies: no csrf claim
    for end in ("ENCODE", "DECODE"):  # our issuer and audience on both ends
        for name in ("ISSUER", "AUDIENCE"):
            if config.get(f"JWT_{end}_{name}") is None:  # flask-jwt-extended's default
                config[f"JWT_{end}_{name}"] = config[f"JWT_{name}"]
    manager = JWTManager(app)
    if algorithm == HS256:
        if not config.get("JWT_SECRET_KEY"):
            raise ConfigError("CTXCLOUD_JWT_ALGORITHM=HS256 needs CTXCLOUD_JWT_SECRET_KEY")
        return None
    keys = SigningKeys(
        algorithm,
        parse_signing_keys(config.get("JWT_SIGNING_KEYS"), algorithm),
        retirement_window(config),
    )

    def signing_key() -> PrivateKey:
        key = flask.g.get(_REQUEST_KEY)
        if key is None:
            key = keys.signing_key()
            setattr(flask.g, _REQUEST_KEY, key)
        return key

    @manager.additional_headers_loader
    def _kid(identity: Any) -> dict[str, str]:
        return {"kid": signing_key().kid}

    @manager.encode_key_loader
    def _private_key(identity: Any) -> Any:
        return signing_key().key

    @manager.decode_key_loader
    def _public_key(header: Mapping[str, Any], claims: Mapping[str, Any]) -> Any:
        key = keys.verification_key(header.get("kid"))
        if key is None:  # no kid, an unknown, standby or removed one: refused as any bad token
            raise jwt.InvalidKeyError("the token's kid names no key that verifies")
        return key

    return keys


def retirement_window(config: Mapping[str, Any]) -> float:
    """Seconds a retired key stays published and accepted: CTXCLOUD_JWT_KEY_RETIREMENT, or
    the longest lifetime of a token it may have signed plus a minute of clock leeway (which
    also covers other processes noticing the rotation, within CTXCLOUD_REVOCATION_MAX_DELAY)."""
    given = config.get("JWT_KEY_RETIREMENT")
    if given not in (None, ""):
        try:
            seconds = float(given)
        except (TypeError, ValueError):
            seconds = -1.0
        if not 0 <= seconds < float("inf"):
            raise ConfigError("CTXCLOUD_JWT_KEY_RETIREMENT must be a number of seconds")
        return seconds
    lifetimes = [
        _seconds(config.get(name))
        for name in config
        if name.startswith("JWT_") and name.endswith("_TOKEN_EXPIRES")
    ]
    return max(lifetimes, default=0.0) + LEEWAY_SECONDS


def _seconds(value: Any) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0  # False: tokens that never expire are not ours to bound
    return float(value)
