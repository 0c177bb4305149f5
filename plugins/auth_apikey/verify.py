"""Verifying a presented API key: from memory on the hot path, from the database on a miss.

A request costs one HMAC, one dict lookup and one generation read from memory (see
ctxcloud.tenancy's credential cache); the database is read only for a key this process has
not verified under the tenant's current generation, and written at most once a minute per
key (its last-used time).
"""

from __future__ import annotations

import datetime
import hmac
import logging
import time
from dataclasses import dataclass

import flask

from ctxcloud import Actor, Tenant, Unauthorized, utcnow
from ctxcloud.plugins.auth_apikey.keys import key_hash, key_prefix
from ctxcloud.plugins.auth_apikey.models import ApiKey
from ctxcloud.plugins.auth_apikey.service import pepper
from ctxcloud.tenancy import CachedCredential, CredentialCache, credential_cache, scope_of

log = logging.getLogger("ctxcloud.auth")
CACHE = "api_key"
EXTENSION = "ctxcloud.api_key_verifier"


def presented_key(request: flask.Request) -> str | None:
    """The API key the request carries (``X-API-Key`` or ``Bearer ctx_...``), or None."""
    environ = request.environ  # read directly: this runs on every request
    header = environ.get("HTTP_X_API_KEY")
    authorization = environ.get("HTTP_AUTHORIZATION")
    if header is not None:
        if authorization is not None:
            raise Unauthorized("Send one credential: Authorization or X-API-Key, not both.")
        return header.strip()
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value.startswith("ctx_"):
        return value
    return None


def _epoch(moment: datetime.datetime | None) -> float | None:
    return None if moment is None else moment.replace(tzinfo=datetime.UTC).timestamp()


@dataclass
class Verifier:
    """What verifying a key needs, resolved once per app instead of on every request."""

    pepper: bytes
    last_used_interval: float
    cache: CredentialCache


def verifier() -> Verifier:
    extensions = flask.current_app.extensions
    found = extensions.get(EXTENSION)
    if found is None:
        config = flask.current_app.config
        found = extensions[EXTENSION] = Verifier(
            pepper=pepper(),
            last_used_interval=float(config["API_KEY_LAST_USED_INTERVAL"]),
            cache=credential_cache(CACHE),
        )
    return found


def _load(key: str, digest: str, now: float, cache: CredentialCache) -> CachedCredential:
    """Read the key (and its tenant) after reading the generation it will be cached under."""
    prefix = key_prefix(key)
    owner = ApiKey.select(ApiKey.tenant_id).where(ApiKey.prefix == prefix).first()
    if owner is None:
        raise Unauthorized()
    scope = scope_of(owner.tenant_id)
    generation = cache.generations.current(scope)
    row = ApiKey.get_or_none(ApiKey.prefix == prefix)
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthorized()  # a wrong secret for a real prefix is not cached
    tenant = Tenant.get_or_none(Tenant.id == row.tenant_id) if row.tenant_id else None
    actor = None
    if row.revoked_at is None and (row.tenant_id is None or tenant is not None):
        actor = Actor(
            kind="api_key",
            id=row.id,
            tenant_id=row.tenant_id,
            role=None,
            permissions=frozenset(row.scopes),
            project_ids=None if row.project_ids is None else frozenset(row.project_ids),
            credential_id=row.id,
            tenant=tenant,
        )
    entry = cache.put(digest, actor, scope, generation, now, expires_at=_epoch(row.expires_at))
    entry.last_used_written = _epoch(row.last_used_at) or 0.0
    return entry


def _record_use(entry: CachedCredential, now: float, interval: float) -> None:
    """Write the last-used time at most once per interval per key, never failing the request."""
    entry.last_used_written = now
    moment = utcnow()
    try:
        ApiKey.update(last_used_at=moment).where(
            ApiKey.id == entry.actor.id,
            ApiKey.last_used_at.is_null()
            | (ApiKey.last_used_at < moment - datetime.timedelta(seconds=interval)),
        ).execute()
    except Exception:
        log.warning("could not record an API key's last use", exc_info=True)


def verify_api_key(key: str) -> Actor:
    """The key's Actor; 401 (one answer for all) when malformed, unknown, revoked or expired."""
    if key_prefix(key) is None:
        raise Unauthorized()
    state = verifier()
    digest = key_hash(state.pepper, key)
    now = time.time()
    entry = state.cache.get(digest, now) or _load(key, digest, now, state.cache)
    if entry.actor is None or (entry.expires_at is not None and now >= entry.expires_at):
        raise Unauthorized()
    if now - entry.last_used_written >= state.last_used_interval:
        _record_use(entry, now, state.last_used_interval)
    return entry.actor
