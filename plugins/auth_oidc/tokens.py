"""Verifying an external access token against one registered provider, with PyJWT.

Refused (``TokenRefused``, naming why): not a JWT; an algorithm outside the provider's
allow-list (which holds asymmetric algorithms only, so ``none`` and HS* never pass, and a
provider's public key can never be used as an HMAC secret); no ``kid``; a key the set lacks
or that is for another algorithm; a bad signature; another issuer; none of the provider's
audiences; several audiences without an ``azp`` that is one of the provider's; no ``exp``,
or past it beyond the leeway; ``nbf`` or ``iat`` in the future beyond the leeway; no subject.
"""

from __future__ import annotations

from typing import Any

import jwt

from ctxcloud.plugins.auth_oidc.keysets import KeyRefused, KeySets

# Asymmetric JWS algorithms (RFC 7518, RFC 8037): a provider may allow any of these.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 16 * 1024
MAX_SUBJECT_CHARS = 255


class TokenRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def peek(token: str) -> dict[str, Any] | None:
    """The token's payload, NOT verified (only to decide whose it is); None: not a JWT."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def audiences_of(claims: dict[str, Any]) -> list[str]:
    """`aud` as a list of strings (a string is one audience); TokenRefused otherwise."""
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and aud and all(isinstance(item, str) for item in aud):
        return aud
    raise TokenRefused("the token has no audience (`aud`)")


_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "the token expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet (nbf or iat in the future)"),
    (jwt.InvalidAudienceError, "the token is not for an audience of this provider"),
    (jwt.InvalidIssuerError, "the token's issuer is not this provider's"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, iss, aud)"),
    (jwt.InvalidSignatureError, "the signature does not verify"),
]


def verify(token: str, provider: Any, key_sets: KeySets, leeway: float) -> dict[str, Any]:
    """The verified claims of `token` for `provider`; TokenRefused naming why not.

    ``KeysUnavailable`` passes through: the provider, not the token, is at fault.
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise TokenRefused("the token is too long")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        raise TokenRefused("not a JWT") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in provider.algorithms:
        allowed = ", ".join(provider.algorithms)
        raise TokenRefused(f"the algorithm {algorithm!r} is not allowed (allowed: {allowed})")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("the token's header has no kid")
    try:
        key = key_sets.key(provider.jwks_uri, kid, algorithm)
    except KeyRefused as exc:
        raise TokenRefused(exc.reason) from None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=list(provider.audiences),
            issuer=provider.issuer,
            leeway=leeway,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        for kind, reason in _REASONS:
            if isinstance(exc, kind):
                raise TokenRefused(reason) from None
        raise TokenRefused("the token is not valid") from None
    audiences = audiences_of(claims)
    if len(audiences) > 1:
        azp = claims.get("azp")
        if not isinstance(azp, str) or azp not in provider.audiences:
            raise TokenRefused(
                "a token with several audiences needs an `azp` that is one of the provider's"
            )
    subject_of(claims, provider.subject_claim)
    return claims


def subject_of(claims: dict[str, Any], subject_claim: str) -> str:
    subject = claims.get(subject_claim)
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
        raise TokenRefused(f"the subject claim {subject_claim!r} is missing or not a string")
    return subject
