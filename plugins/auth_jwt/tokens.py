"""Signing and checking tokens with flask-jwt-extended (HS256, issuer and audience checked).

Claims: ``sub`` (user id), ``tid`` (tenant id), ``role``, ``fid`` (the login: token family),
``jti``, ``type`` (access or refresh), ``iss``, ``aud``, ``iat``, ``nbf``, ``exp``.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

import flask
import flask_jwt_extended
import jwt
from flask_jwt_extended.exceptions import JWTExtendedException

from app.errors import Unauthorized

ACCESS, REFRESH = "access", "refresh"
REQUIRED_CLAIMS = ("sub", "tid", "fid", "jti", "type", "exp", "iat")
MAX_TOKEN_LENGTH = 4096


def new_jti() -> str:
    return secrets.token_urlsafe(18)


def access_lifetime() -> int:
    return int(flask.current_app.config["JWT_ACCESS_TOKEN_EXPIRES"])


def refresh_lifetime() -> int:
    return int(flask.current_app.config["JWT_REFRESH_TOKEN_EXPIRES"])


def issue_tokens(user: Any, family_id: str, refresh_jti: str) -> dict[str, Any]:
    """A new access token and the family's new refresh token, as /auth/token answers them."""
    claims = {"tid": user.tenant_id, "fid": family_id}
    access = flask_jwt_extended.create_access_token(
        identity=user.id,
        additional_claims={**claims, "role": user.role},
        expires_delta=datetime.timedelta(seconds=access_lifetime()),
    )
    refresh = flask_jwt_extended.create_refresh_token(
        identity=user.id,
        additional_claims={**claims, "jti": refresh_jti},
        expires_delta=datetime.timedelta(seconds=refresh_lifetime()),
    )
    return {
        "access_token": access,
        "refresh_token": refresh,
        # bandit B105 reads "token" as a password: this is the OAuth 2 token type's name.
        "token_type": "Bearer",  # nosec B105
        "expires_in": access_lifetime(),
    }


def decode(token: str, expected_type: str) -> dict[str, Any]:
    """Verified claims of a token of `expected_type`; 401 for anything else, never a 5xx.

    Refused: bad or missing signature (``alg: none`` included), another algorithm, expired,
    not yet valid, wrong issuer or audience, the other token type, a missing claim.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized()
    try:
        claims = flask_jwt_extended.decode_token(token)
    except (jwt.PyJWTError, JWTExtendedException):
        raise Unauthorized() from None
    if any(claims.get(name) is None for name in REQUIRED_CLAIMS):
        raise Unauthorized()
    if claims["type"] != expected_type:
        raise Unauthorized(f"A token of type {expected_type!r} is required here.")
    return claims
