"""Accepting a client-credentials token on each request: from memory, re-checked when its
tenant changes.

A bearer JWT of ours whose ``type`` claim says ``client_credentials`` is this plugin's: it
is verified or refused (401), never passed on. The first use of a token in a process checks
its signature and reads its record, its client and its tenant; later uses cost a dict lookup
and one generation read from memory (ctxcloud.tenancy's credential cache), so a revoked
token, a deleted client or a suspended tenant is refused on the next request of every
process.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import flask

from ctxcloud import Actor, Tenant, Unauthorized
from ctxcloud.plugins.auth_oauth import service
from ctxcloud.plugins.auth_oauth.protocol import MAX_TOKEN_LENGTH, TOKEN_TYPE, verified_claims
from ctxcloud.tenancy import CachedCredential, CredentialCache, credential_cache, scope_of

CACHE = "oauth_client"


def _unverified_payload(token: str) -> dict[str, Any] | None:
    """A JWT's payload as it claims to be, only to tell whose token it is."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def bearer_jwt(request: flask.Request) -> str | None:
    """The bearer token, unless there is none or it is an API key (``ctx_...``). A request
    that also sends ``X-API-Key`` is not ours either: the API key plugin refuses two
    credentials, and must get to see them."""
    authorization = request.environ.get("HTTP_AUTHORIZATION")
    if authorization is None or "HTTP_X_API_KEY" in request.environ:
        return None
    scheme, _, value = authorization.partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token or token.startswith("ctx_"):
        return None
    return token


def claims_to_be_ours(token: str) -> bool:
    """Does the token say it is a client-credentials token of this service? (Unverified: it
    only decides who verifies it.)"""
    payload = _unverified_payload(token)
    if payload is None or payload.get("type") != TOKEN_TYPE:
        return False
    return payload.get("iss") == flask.current_app.config["JWT_ISSUER"]


def authenticate_client_token(request: flask.Request) -> Actor | None:
    """The actor of a client-credentials token; None for any other credential.

    A token this process verified is found in the cache before anything else (a dict
    lookup); only a token it has not seen is looked at to tell whose it is.
    """
    token = bearer_jwt(request)
    if token is None:
        return None
    now = time.time()
    cache = credential_cache(CACHE)
    entry = cache.get(token, now)
    if entry is None:
        if not claims_to_be_ours(token):
            return None
        entry = _load(token, now, cache)
    if entry.actor is None or now >= entry.expires_at:
        raise Unauthorized()
    return entry.actor


def _actor(claims: dict[str, Any]) -> Actor | None:
    """The client behind a live token, with the scopes it holds now (None: refused)."""
    record = service.token_record(claims["jti"], claims["tid"])
    if record is None or record.revoked_at is not None or record.client_id != claims["sub"]:
        return None
    client = service.find_client(claims["sub"])
    if client is None or client.tenant_id != claims["tid"]:
        return None
    tenant = Tenant.get_or_none(Tenant.id == client.tenant_id)
    if tenant is None:
        return None
    granted = frozenset(claims["scope"].split()) & frozenset(client.scopes)
    return Actor(
        kind="oauth_client",
        id=client.client_id,
        tenant_id=tenant.id,
        role=None,
        permissions=granted,
        project_ids=None if client.project_ids is None else frozenset(client.project_ids),
        credential_id=claims["jti"],
        tenant=tenant,
    )


def _load(token: str, now: float, cache: CredentialCache) -> CachedCredential:
    claims = verified_claims(token)
    if claims is None:
        raise Unauthorized()
    scope = scope_of(claims["tid"])
    generation = cache.generations.current(scope)  # before reading the database
    return cache.put(token, _actor(claims), scope, generation, now, float(claims["exp"]))
