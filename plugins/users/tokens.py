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

from ctxcloud import Unauthorized

ACCESS, REFRESH = "access", "refresh"


class TokenExpired(Unauthorized):
    """A token that was genuine (its signature checked) but is past its ``exp``: the client
    should refresh it (an access token) or log in again (a refresh token). A forged or
    altered token never gets this answer: the signature is checked first."""

    code = "token_expired"

    def __init__(self, kind: str) -> None:
        action = "refresh it" if kind == ACCESS else "log in again"
        detail = f"The {kind} token expired: {action}."
        super().__init__(
            detail,
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="ctxcloud", error="invalid_token", '
                    f'error_description="The {kind} token expired"'
                )
            },
        )


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


def _unverified_type(token: str) -> str | None:
    """The `type` claim of a token whose signature was already verified (only its time is off)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    kind = claims.get("type")
    return kind if kind in (ACCESS, REFRESH) else None


def decode(token: str, expected_type: str) -> dict[str, Any]:
    """Verified claims of a token of `expected_type`; 401 for anything else, never a 5xx.

    Refused: bad or missing signature (``alg: none`` included), another algorithm, expired,
    not yet valid, wrong issuer or audience, the other token type, a missing claim.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized()
    try:
        claims = flask_jwt_extended.decode_token(token)
    except jwt.ExpiredSignatureError:
        # PyJWT checks the signature before the claims: this token is ours, only too old.
        kind = _unverified_type(token)
        if kind != expected_type:
            raise Unauthorized() from None
        raise TokenExpired(kind) from None
    except (jwt.PyJWTError, JWTExtendedException):
        raise Unauthorized() from None
    if any(claims.get(name) is None for name in REQUIRED_CLAIMS):
        raise Unauthorized()
    if claims["type"] != expected_type:
        raise Unauthorized(f"A token of type {expected_type!r} is required here.")
    return claims
