"""Verifying an access token on each request: from memory, re-checked when its tenant changes.

The first use of a token in a process decodes it and reads its login, user and tenant; later
uses cost a dict lookup, an expiry check and one generation read from memory (see
ctxcloud.tenancy's credential cache), so a revoked login, a disabled or deleted user, a
changed role or a suspended tenant applies on the next request of every process (with
Redis, within CTXCLOUD_REVOCATION_MAX_DELAY on the other processes).
"""

from __future__ import annotations

import time

import flask

from ctxcloud import ROLE_PERMISSIONS, Actor, Tenant, Unauthorized
from ctxcloud.plugins.users.models import TokenFamily, User
from ctxcloud.plugins.users.tokens import ACCESS, TokenExpired, decode
from ctxcloud.tenancy import CachedCredential, CredentialCache, credential_cache, scope_of

CACHE = "jwt"


def presented_token(request: flask.Request) -> str | None:
    """The bearer token of ``Authorization`` (API keys are claimed first), or None."""
    authorization = request.environ.get("HTTP_AUTHORIZATION")
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("Use Authorization: Bearer <token>.")
    return value.strip()


def _actor(claims: dict) -> Actor | None:
    """The user behind a live login, with the role they hold now (None: refused)."""
    family = TokenFamily.get_or_none(TokenFamily.id == claims["fid"])
    if family is None or family.revoked_at is not None:
        return None
    if family.user_id != claims["sub"] or family.tenant_id != claims["tid"]:
        return None
    user = User.get_or_none(User.id == family.user_id)
    tenant = Tenant.get_or_none(Tenant.id == family.tenant_id)
    if user is None or tenant is None or user.tenant_id != tenant.id or user.disabled:
        return None
    if user.sessions_revoked_at is not None and user.sessions_revoked_at >= family.created_at:
        return None
    return Actor(
        kind="user",
        id=user.id,
        tenant_id=tenant.id,
        role=user.role,
        permissions=ROLE_PERMISSIONS.get(user.role, frozenset()),
        credential_id=family.id,
        tenant=tenant,
    )


def _load(token: str, now: float, cache: CredentialCache) -> CachedCredential:
    claims = decode(token, ACCESS)
    scope = scope_of(claims["tid"])
    generation = cache.generations.current(scope)  # before reading the database
    return cache.put(token, _actor(claims), scope, generation, now, float(claims["exp"]))


def verify_access_token(token: str) -> Actor:
    """The token's Actor; 401 when invalid, expired, or its login is no longer live."""
    now = time.time()
    cache = credential_cache(CACHE)
    entry = cache.get(token, now) or _load(token, now, cache)
    if entry.actor is None:
        raise Unauthorized()
    if now >= entry.expires_at:
        raise TokenExpired(ACCESS)
    return entry.actor
